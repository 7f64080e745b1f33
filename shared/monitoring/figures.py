"""How a monitor decision's figures read to a person: each figure against its threshold, as the
demo's timeline, the operators' CLI and the status page print them."""

from __future__ import annotations

from typing import Any


def figure_text(f: dict[str, Any]) -> str:
    """``psi(trip_distance) 1.93 (alert > 0.25) ✘`` for one stored figure (shared.monitoring.decide.Figure);
    a binned figure with its bound, ``ks(prediction) 0.124 ±0.0005 (alert > 0.2) ✔``."""
    value = "n/a" if f.get("value") is None else f"{f['value']:.3g}"
    if f.get("value") is not None and f.get("bound"):
        value += f" ±{f['bound']:.2g}"
    mark = {"violation": "✘", "ok": "✔"}.get(f["verdict"], f["verdict"])
    op = ">" if f["direction"] == "above" else "<"
    return f"{f['check']} {value} (alert {op} {f['threshold']:g}) {mark}"


def figures_line(decision: dict[str, Any]) -> str:
    """Every figure of a decision on one line, ``; ``-separated."""
    return "; ".join(figure_text(f) for f in decision.get("figures") or [])
