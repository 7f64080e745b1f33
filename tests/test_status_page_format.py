"""Pure pieces of the status page: numbers for people, the next-step hint, the refresh parameter,
and drift plots with one line per version."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.pages.hints import next_steps
from handlers.pages.layout import BadRequest, number, refresh
from handlers.pages.model import series
from handlers.pages.overview import step_text
from handlers.pages.plots import figure_plot


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (0.25, "0.25"), (0.0123, "0.0123"), (1.5, "1.5"), (99.96, "100"), (999.6, "1,000"),
    (1234.5, "1,234"), (-2500, "-2,500"), (2_500_000, "2.5M"), (0.00001234, "1.2e-05")])
def test_numbers_are_written_for_people(value: float, text: str) -> None:
    assert number(value) == text


@given(st.floats(min_value=0.001, max_value=1e15, allow_nan=False) | st.floats(min_value=-1e15, max_value=-0.001))
def test_no_exponent_from_a_thousandth_up_and_short_enough_for_the_axis(value: float) -> None:
    text = number(value)
    assert "e" not in text and len(text) <= 11, text


def test_refresh_is_off_by_default_and_checked() -> None:
    assert refresh({}) is None and refresh({"refresh": ""}) is None
    assert refresh({"refresh": "30"}) == 30
    for bad in ("0", "1", "3601", "x", "-5", "2.5"):
        with pytest.raises(BadRequest, match="refresh must be a whole number of seconds from 2 to 3600"):
            refresh({"refresh": bad})


def test_a_paused_rollout_hints_the_commands_that_act_on_it() -> None:
    steps = [cmd for cmd, _ in next_steps("taxi_fare", "prod", {"status": "running", "paused": "alarm"})]
    assert steps[:2] == ["reactor resume taxi_fare prod --wait", "reactor promote taxi_fare prod --wait"]
    assert any(s.startswith("reactor abort taxi_fare prod --reason") for s in steps)
    assert any(s.startswith("reactor rollback taxi_fare prod --reason") for s in steps)


def test_a_failed_rollout_hints_its_timeline_and_a_new_deploy_and_others_hint_nothing() -> None:
    row = {"id": "ab12", "status": "failed", "version": "7", "paused": None}
    assert [c for c, _ in next_steps("m", "prod", row)] == ["reactor rollout ab12",
                                                            "reactor deploy m prod --version 7 --wait"]
    assert next_steps("m", "prod", {**row, "status": "aborted"})
    for quiet in ({**row, "status": "done"}, {**row, "status": "running"}, None):
        assert next_steps("m", "prod", quiet) == []
    # A name a shell would split is quoted.
    quoted = next_steps("my model", "prod", {**row, "status": "rolled_back"})[1][0]
    assert quoted.startswith("reactor deploy 'my model' prod")


def _decision(version: str, at: float, value: float | None) -> dict:
    return {"version": version, "at": at, "window": {"end": at}, "figures": [
        {"check": "ks(prediction)", "value": value, "threshold": 0.3, "direction": "above",
         "verdict": "ok" if value is None or value < 0.3 else "violation"}]}


def test_a_canary_s_two_versions_are_two_lines_named_in_legend_and_tooltips() -> None:
    newest_first = [_decision(v, 100.0 - i, 0.9 if v == "2" else 0.0) for i, v in enumerate("212121")]
    got = series(newest_first)["ks(prediction)"]
    assert list(got["lines"]) == ["1", "2"]
    assert [p["at"] for p in got["lines"]["2"]] == [96.0, 98.0, 100.0]  # oldest first
    svg = figure_plot("ks(prediction)", got["lines"], 0.3, "above")
    assert svg.count("<polyline") == 2
    assert re.findall(r'class="legend-entry" data-version="(\d)"', svg) == ["1", "2"]
    titles = re.findall(r"<circle[^>]*><title>([^<]*)</title>", svg)
    assert len(titles) == 6 and all(t.startswith(("v1 · ", "v2 · ")) for t in titles)
    assert 'class="empty"' not in svg


def test_a_figure_without_values_says_so_and_axes_never_show_an_exponent() -> None:
    svg = figure_plot("rmse", {"1": [{"at": 1.0, "value": None, "verdict": "insufficient_data"}]}, 4.0, "above")
    assert 'class="empty"' in svg and "No value yet" in svg and "<polyline" not in svg
    big = figure_plot("rows", {"1": [{"at": 1.0, "value": 1234.0, "verdict": "ok"}]}, 1000.0, "above")
    axis = re.findall(r'class="axis"[^>]*>([^<]*)<', big)
    assert axis == ["1,357", "0"] and not any("e+" in a for a in axis)


def test_traffic_steps_are_counted_from_one_and_others_are_named_only() -> None:
    assert step_text({"step": "bake", "stage": 0}) == "step 1 (bake)"
    assert step_text({"step": "analyze", "stage": 1}) == "step 2 (analyze)"
    for step in ("smoke", "end", "retire"):
        assert step_text({"step": step, "stage": 2}) == f"step {step}"
