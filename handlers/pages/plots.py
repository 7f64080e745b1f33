"""Inline SVG line plots: one monitor figure over recent windows against its threshold."""

from __future__ import annotations

from typing import Any

from handlers.pages.layout import esc, when

WIDTH, HEIGHT, PAD = 640, 170, 36
_AXIS = 'font-size="11" fill="#57606a"'


def figure_plot(check: str, points: list[dict[str, Any]], threshold: float, direction: str) -> str:
    """``points``: ``{"at", "value", "verdict"}`` oldest first (a value may be None: no data).
    The threshold is a dashed line; a violating window is a red dot."""
    values = [p["value"] for p in points if p["value"] is not None]
    top = max([*values, threshold]) * 1.1 or 1.0
    bottom = min([*values, threshold, 0.0])
    span = (top - bottom) or 1.0
    n = max(len(points) - 1, 1)

    def x(i: int) -> float:
        return PAD + i * (WIDTH - 2 * PAD) / n

    def y(v: float) -> float:
        return HEIGHT - PAD + (bottom - v) * (HEIGHT - 2 * PAD) / span

    line = " ".join(f"{x(i):.1f},{y(p['value']):.1f}" for i, p in enumerate(points) if p["value"] is not None)
    dots = "".join(
        f'<circle class="{"violation" if p["verdict"] == "violation" else "point"}" cx="{x(i):.1f}" '
        f'cy="{y(p["value"]):.1f}" r="3" fill="{"#b42318" if p["verdict"] == "violation" else "#0969da"}">'
        f'<title>{esc(when(p["at"]))}: {p["value"]:.4g} ({esc(p["verdict"])})</title></circle>'
        for i, p in enumerate(points) if p["value"] is not None)
    ty = y(threshold)
    op = ">" if direction == "above" else "<"
    first, last = (when(points[0]["at"]), when(points[-1]["at"])) if points else ("", "")
    return (
        f'<svg class="plot" role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'data-check="{esc(check)}" data-threshold="{threshold:g}" aria-label="{esc(check)} against its threshold">'
        f'<text x="{PAD}" y="16" font-size="13" font-weight="600">{esc(check)}</text>'
        f'<text x="{WIDTH - PAD}" y="16" font-size="12" text-anchor="end" fill="#b42318">'
        f'alert {op} {threshold:g}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#8c959f"/>'
        f'<line class="threshold" x1="{PAD}" y1="{ty:.1f}" x2="{WIDTH - PAD}" y2="{ty:.1f}" stroke="#b42318" '
        f'stroke-dasharray="6 4"/>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" {_AXIS} text-anchor="end">{top:.3g}</text>'
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD + 4}" {_AXIS} text-anchor="end">{bottom:.3g}</text>'
        f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="1.5"/>{dots}'
        f'<text x="{PAD}" y="{HEIGHT - 12}" {_AXIS}>{esc(first)}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" {_AXIS} text-anchor="end">{esc(last)}</text>'
        f'</svg>')
