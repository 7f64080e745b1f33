"""Inline SVG line plots: one monitor figure over recent windows against its threshold, one line
per served version (the monitor judges each version on its own baseline, shared.monitoring.store,
so during a canary two versions' figures interleave in time and must not be joined), each named
in the legend and in every point's tooltip."""

from __future__ import annotations

from typing import Any

from handlers.pages.layout import esc, number, when

WIDTH, HEIGHT, PAD = 640, 190, 36
LEFT = 64  # room for the value labels at the left axis (number(): at most about 9 characters)
_AXIS = 'font-size="11" fill="#57606a"'
# Distinct line colours, the newest version last; red stays for the threshold and violations.
COLOURS = ("#0969da", "#8250df", "#1a7f37", "#bc4c00", "#1b7c83", "#6e7781")


def figure_plot(check: str, lines: dict[str, list[dict[str, Any]]], threshold: float, direction: str) -> str:
    """``lines``: per version, ``{"at", "value", "verdict"}`` oldest first (a value may be None: no
    data). The threshold is a dashed line; a violating window is a red dot. A figure without any
    value yet (``rmse`` before labels arrive) says so instead of an empty frame."""
    points = [p for pts in lines.values() for p in pts]
    values = [p["value"] for p in points if p["value"] is not None]
    top = max([*values, threshold]) * 1.1 or 1.0
    bottom = min([*values, threshold, 0.0])
    span = (top - bottom) or 1.0
    times = [float(p["at"]) for p in points if p.get("at") is not None]
    start, end = (min(times), max(times)) if times else (0.0, 1.0)

    def x(at: Any) -> float:
        return LEFT + (float(at) - start) * (WIDTH - LEFT - PAD) / ((end - start) or 1.0)

    def y(v: float) -> float:
        return HEIGHT - PAD + (bottom - v) * (HEIGHT - 2 * PAD) / span

    drawn = []
    for i, (version, pts) in enumerate(lines.items()):
        colour = COLOURS[i % len(COLOURS)]
        shown = [p for p in pts if p["value"] is not None and p.get("at") is not None]
        if not shown:
            continue
        path = " ".join(f"{x(p['at']):.1f},{y(p['value']):.1f}" for p in shown)
        dots = "".join(
            f'<circle class="{"violation" if p["verdict"] == "violation" else "point"}" cx="{x(p["at"]):.1f}" '
            f'cy="{y(p["value"]):.1f}" r="3" fill="{"#b42318" if p["verdict"] == "violation" else colour}">'
            f'<title>v{esc(version)} · {esc(when(p["at"]))}: {esc(number(p["value"]))} ({esc(p["verdict"])})'
            f'</title></circle>' for p in shown)
        drawn.append(f'<g class="series" data-version="{esc(version)}"><title>v{esc(version)}</title>'
                     f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>{dots}</g>')
    legend = "".join(
        f'<g class="legend-entry" data-version="{esc(v)}"><rect x="{LEFT + 150 + 70 * i}" y="7" width="10" '
        f'height="10" fill="{COLOURS[i % len(COLOURS)]}"/><text x="{LEFT + 164 + 70 * i}" y="16" font-size="12">'
        f'v{esc(v)}</text></g>' for i, v in enumerate(lines))
    empty = "" if values else (
        f'<text class="empty" x="{(LEFT + WIDTH - PAD) / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" '
        f'{_AXIS}>No value yet in these windows (too few rows, or no labels yet)</text>')
    ty = y(threshold)
    op = ">" if direction == "above" else "<"
    first, last = (when(start), when(end)) if times else ("", "")
    return (
        f'<svg class="plot" role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'data-check="{esc(check)}" data-threshold="{threshold:g}" aria-label="{esc(check)} against its threshold">'
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="600">{esc(check)}</text>'
        f'<g class="legend">{legend}</g>'
        f'<text x="{WIDTH - PAD}" y="16" font-size="12" text-anchor="end" fill="#b42318">'
        f'alert {op} {esc(number(threshold))}</text>'
        f'<line x1="{LEFT}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#8c959f"/>'
        f'<line class="threshold" x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - PAD}" y2="{ty:.1f}" stroke="#b42318" '
        f'stroke-dasharray="6 4"/>'
        f'<text class="axis" x="{LEFT - 4}" y="{PAD + 4}" {_AXIS} text-anchor="end">{esc(number(top))}</text>'
        f'<text class="axis" x="{LEFT - 4}" y="{HEIGHT - PAD + 4}" {_AXIS} text-anchor="end">'
        f'{esc(number(bottom))}</text>'
        f'{"".join(drawn)}{empty}'
        f'<text x="{LEFT}" y="{HEIGHT - 12}" {_AXIS}>{esc(first)}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" {_AXIS} text-anchor="end">{esc(last)}</text>'
        f'</svg>')
