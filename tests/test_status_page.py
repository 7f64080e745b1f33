"""The status page in a real browser: headless Chromium from Debian's packages (/usr/bin/chromium,
never a downloaded one) driven by Playwright, against the real function_app on the local host,
which enforces the function key as Azure does. The state is made by the app's own code: the
rollout engine (tests/engine.py: the real handlers, a clock the test moves) for a healthy, a
paused and a failed canary; analysis runs judged by the app's own judge and stored as the
analyze step stores them; monitor decisions and 1,000 rollouts written through the stores.

Screenshots are saved under ``.local/artifacts/status_page/`` (the path is printed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.status_page import Counted
from handlers.pages import model as model_page
from local.stack import HOST_KEY, app_settings, function_host
from shared import journal, rejections, rollouts
from shared.delivery import analysis as runs
from shared.delivery import store as analyses
from shared.delivery.judge import verdicts
from shared.delivery.measure import Arm, Figures
from shared.monitoring import store as monitor_store
from shared.monitoring.decide import Figure
from shared.settings import APP_ROOT
from shared.tables import Entity
from tests.conftest import NEVER
from tests.engine import ENDPOINT, MODEL, Driver
from tests.test_progressive_engine import CANARY, deploy, first_version, live, run_until, steer

ARTIFACTS = APP_ROOT / ".local" / "artifacts" / "status_page"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HOUR = 3600.0
KV_REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv-reactor.vault.azure.net/secrets/mlflow-webhook-secret/)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def serve(d: Driver, tmp: Path, **extra: str) -> Iterator[str]:
    """The real function_app on the local host over the engine's state, with ``extra`` app
    settings; yields the base URL. Its timers never fire and nothing is left on the queues, so the
    page shows what the engine left."""
    assert d.next_visible() is None, "a message is still queued: the host would act on it"
    settings = app_settings(data_dir=tmp, policy=tmp / "policy.json", mlflow_url="http://127.0.0.1:9",
                            workspace_url="http://127.0.0.1:9", watch_schedule=NEVER, repair_schedule=NEVER,
                            monitor_schedule=NEVER)
    settings["REACTOR_STORAGE"] = f"sqlite:///{tmp / 'state.db'}"
    settings.update(extra)
    with function_host(settings) as host:
        yield f"{host.url}/api/status"


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    answer = page.goto(url)
    assert answer is not None and answer.status == 200, answer and answer.text()
    return page


def follow(page: Any, selector: str) -> None:
    """Click an internal link, as a person does, and wait for the page it opens (answered, not refused)."""
    with page.expect_navigation() as nav:
        page.click(selector)
    answer = nav.value
    assert answer is not None and answer.status == 200, answer and answer.text()


def drain(d: Driver) -> None:
    """Run every message left, moving the clock to each (a paused rollout's step arrives and rests)."""
    for _ in range(100):
        if not d.step():
            nxt = d.next_visible()
            if nxt is None:
                return
            d.clock.now = max(d.clock.now, nxt + 0.001)
    raise AssertionError(f"messages kept coming; rollouts: {d.rollouts()}")


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def judged_run(d: Driver, row: dict[str, Any], stage: int, weight: int, cand_errors: int) -> dict[str, Any]:
    """An analysis run of ``row``'s step as the analyze step measures, judges and stores it."""
    policy = d.deps.policy().models[0].environments["prod"].strategy.analysis
    figures = Figures(Arm(row["version"], 4000, cand_errors, 41.0, 4000 - cand_errors),
                      Arm(row["champion"], 36000, 40, 40.0, 35960), psi=0.02, ks=0.04)
    run = runs.new_run(policy.metrics)
    at = row["created_at"] + 60 * (stage + 1)
    for metric, verdict in verdicts(figures, policy).items():
        run = runs.record(run, metric, verdict, None, at)
    run = runs.assess(run, runs.Limits())
    record = {"id": analyses.key(row["id"], stage, 1), "rollout": row["id"], "stage": stage, "weight": weight,
              "run": 1, "version": row["version"], "champion": row["champion"], "phase": run["phase"],
              "window": [at - 300, at], "metrics": run["metrics"], "started_at": at - 300, "finished_at": at}
    analyses.put(d.raw_tables, ENDPOINT, record)
    return record


def hourly_decisions(d: Driver, n: int, *, start: float, violating_from: int | None = None) -> None:
    """``n`` hourly monitor decisions with a PSI figure per column (trip_distance drifts upward)
    and the prediction's JS distance, recorded through the monitor's store."""
    for i in range(n):
        end = start + (i + 1) * HOUR
        bad = violating_from is not None and i >= violating_from
        psi = 0.05 + (0.3 + 0.01 * (i - violating_from) if bad else 0.001 * (i % 50))
        figures = [Figure("psi(trip_distance)", psi, 0.25, 0.2, "above", 500, "violation" if bad else "ok",
                          "psi(trip_distance)").as_dict(),
                   Figure("psi(pickup_zone)", 0.03, 0.25, 0.2, "above", 500, "ok", "psi(pickup_zone)").as_dict(),
                   Figure("js(prediction)", 0.05, 0.19, 0.15, "above", 500, "ok", "js(prediction)").as_dict()]
        verdict = "violation" if bad else "ok"
        monitor_store.record_decision(d.raw_tables, ENDPOINT, {
            "model": MODEL, "environment": "prod", "version": "1", "verdict": verdict,
            "reason": "3 of the last 3 window(s) violate, the latest among them" if bad else "no window violates",
            "action": "retrain" if bad else None, "figures": figures, "window": {"start": end - HOUR, "end": end},
            "windows": []}, now=end)


def test_a_healthy_canary_shows_what_serves_its_timeline_and_its_analysis_per_step(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    _, v2 = first_version(d)
    deploy(d, v2)
    d.run()
    (row,) = [r for r in d.rollouts() if r["version"] == v2]
    assert row["status"] == "done"
    judged_run(d, row, 0, 10, cand_errors=1)
    judged_run(d, row, 1, 50, cand_errors=2)
    with serve(d, tmp_path) as base:
        raw = requests.get(f"{base}/page", headers={"x-functions-key": HOST_KEY}, timeout=30)
        assert raw.status_code == 200 and raw.headers["Content-Type"].startswith("text/html")
        assert HOST_KEY not in raw.text, "the page wrote the key"
        assert raw.headers["Referrer-Policy"] == "no-referrer"
        page = open_page(browser, f"{base}/page?code={HOST_KEY}")
        text = page.inner_text("body")
        assert "Models and environments" in text and MODEL in text and ENDPOINT in text
        assert f"v{v2} 100%" in text and f"@Champion → v{v2}" in text and "all well" in text
        assert page.locator("#app-problems").count() == 0  # every setting works
        assert "done" in text
        shot(page, "healthy-overview")
        # The links carry the key in the browser only: following one is answered, not refused.
        follow(page, 'a[href*="status/rollout"]')
        text = page.inner_text("body")
        assert f"Rollout {row['id']}" in text
        for step in ("smoke", "shift", "bake", "promote"):
            assert step in text, step
        assert "Step 1 at 10%, run 1: Successful" in text and "Step 2 at 50%, run 1: Successful" in text
        assert "error_rate" in text and "prediction_shift" in text and "latency" in text
        assert " min" in text or " s" in text  # the time each step took
        shot(page, "healthy-rollout")


def test_a_paused_canary_says_so_and_why(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    _, v2 = first_version(d)
    deploy(d, v2)
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 10)
    steer(d, "pause", "pause-1", reason="latency alarm in the region")
    run_until(d, lambda: live(d).get("paused"))
    drain(d)
    # And settings that cannot work (shared.app_state): a banner above the table names each and
    # what it stops, never the value.
    bad = {"MLFLOW_WEBHOOK_SECRET": KV_REFERENCE, "AZURE_CLIENT_ID": "reactor-identity-x7"}
    with serve(d, tmp_path, **bad) as base:
        page = open_page(browser, f"{base}/page?code={HOST_KEY}")
        text = page.inner_text("body")
        assert "paused (latency alarm in the region)" in text
        assert f"v{v2} 10%" in text and "@Challenger" in text
        assert "latency alarm in the region" in page.inner_text("table td:last-child")
        banner = page.locator("#app-problems")
        assert banner.is_visible() and banner.get_attribute("role") == "alert"
        said = banner.inner_text()
        assert "MLFLOW_WEBHOOK_SECRET" in said and "every mlflow delivery is refused" in said
        assert "AZURE_CLIENT_ID is not a client id" in said and "Databricks call" in said
        assert page.content().index("app-problems") < page.content().index("<table")  # seen first
        assert not any(value in page.content() for value in bad.values())
        shot(page, "paused-overview")


def test_an_invalid_policy_file_is_told_in_the_banner_with_each_problems_place(browser, tmp_path: Path) -> None:
    """Every view needs the policy: with an invalid file each shows the overview, whose banner
    lists the file's problems (line, column, did-you-mean), not an error page."""
    d = Driver(tmp_path)
    deploy(d, d.registry.register())
    d.run()
    (tmp_path / "policy.json").write_text('{"version": 1, "models": [{"name": "m", "environments": '
                                          '{"prod": {"endpoint": "e", "trak": "latest"}}}]}')
    with serve(d, tmp_path) as base:
        for url in (f"{base}/page?code={HOST_KEY}",
                    f"{base}/model?model={MODEL}&environment=prod&code={HOST_KEY}"):
            page = open_page(browser, url)
            said = page.locator("#app-problems").inner_text()
            assert "the policy file is invalid: " in said and ":1:" in said, said
            assert "unknown key 'trak'; did you mean 'track'?" in said
            assert "The policy declares no model." in page.inner_text("body")
        shot(page, "invalid-policy")


def test_a_failed_rollout_shows_the_reason_the_champion_kept_and_the_next_step(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    v1, v2 = first_version(d)
    d.serving_api.bad_answers.add(v2)
    deploy(d, v2)
    d.run()
    (row,) = [r for r in d.rollouts() if r["version"] == v2]
    assert row["status"] == "failed"
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/page?code={HOST_KEY}")
        text = page.inner_text("body")
        assert f"the last rollout (version {v2}) ended failed" in text
        assert f"v{v1} 100%" in text and f"@Champion → v{v1}" in text
        # The next step: deploy again, after a look at the rollout.
        commands = page.locator("div.hint code").all_inner_texts()
        assert f"reactor deploy {MODEL} prod --version {v2} --wait" in commands
        assert any(c.startswith("reactor rollout ") for c in commands)
        shot(page, "failed-overview")
        follow(page, 'a[href*="status/rollout"]')
        text = page.inner_text("body")
        assert "failed" in text and "smoke" in text
        assert "No analysis run" in text
        shot(page, "failed-rollout")


def test_a_drifting_model_plots_each_figure_against_its_threshold(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path)
    deploy(d, d.registry.register())
    d.run()
    hourly_decisions(d, 30, start=time.time() - 31 * HOUR, violating_from=27)
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/page?code={HOST_KEY}")
        text = page.inner_text("body")
        assert "violation" in text and "psi(trip_distance)" in text and "(alert > 0.25) ✘" in text
        assert "monitor: version 1 violation" in text
        follow(page, 'a[href*="status/model"]')
        plot = page.locator('svg.plot[data-check="psi(trip_distance)"]')
        plot.wait_for()
        assert plot.get_attribute("data-threshold") == "0.25"
        assert plot.locator("line.threshold").count() == 1
        assert plot.locator("circle").count() == 30 and plot.locator("circle.violation").count() == 3
        assert "alert > 0.25" in plot.text_content()
        assert page.locator("svg.plot").count() == 3  # one per figure: two columns and the prediction
        assert page.locator("a.older").count() == 0  # 30 windows fit one page
        shot(page, "drifting-model")


def test_without_a_key_the_page_is_refused_and_a_malformed_parameter_is_a_400_page(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    with serve(d, tmp_path) as base:
        for view in ("page", "model?model=fare&environment=prod", "rollout?endpoint=e&id=x", "rejections"):
            assert requests.get(f"{base}/{view}", timeout=30).status_code == 401, view
            assert requests.get(f"{base}/{view}", headers={"x-functions-key": "wrong"}, timeout=30).status_code == 401
        key = {"x-functions-key": HOST_KEY}
        bad = requests.get(f"{base}/model?model=fare&environment=prod&limit=0", headers=key, timeout=30)
        assert bad.status_code == 400 and "limit must be a whole number from 1 to 200" in bad.text
        bad = requests.get(f"{base}/model?model=fare&environment=prod&continuation=nope", headers=key, timeout=30)
        assert bad.status_code == 400 and "continuation token" in bad.text
        bad = requests.get(f"{base}/rollout", params={"endpoint": "<b>x</b>", "id": "x"}, headers=key, timeout=30)
        assert bad.status_code == 400 and "endpoint is required" in bad.text and "<b>x</b>" not in bad.text
        missing = requests.get(f"{base}/model?model=nope&environment=prod", headers=key, timeout=30)
        assert missing.status_code == 404 and "no model nope" in missing.text
        missing = requests.get(f"{base}/rollout?endpoint={ENDPOINT}&id=abc", headers=key, timeout=30)
        assert missing.status_code == 404
        rejections.note(d.raw_tables, 401, "bad_signature", "the signature does not match", b"{}")
        journal.record(d.raw_tables, "command", journal.key("id", "c1"), "rejected",
                       reason="model <nope> is not in the policy")
        got = requests.get(f"{base}/rejections", headers=key, timeout=30)
        assert got.status_code == 200 and "bad_signature: 1" in got.text
        assert "model &lt;nope&gt; is not in the policy" in got.text  # escaped, as everything rendered


def _thousand_rollouts(d: Driver, now: float) -> None:
    """1,000 finished rollouts of the endpoint, each claimed and ended through shared.rollouts."""
    for i in range(1000):
        rid = rollouts.rollout_id("test", str(i), "prod")
        at = now - (1000 - i) * 600
        rollouts.claim(d.raw_tables, ENDPOINT, rid, {"model": MODEL, "environment": "prod", "version": str(i + 1),
                                                     "target": {"served_entities": []}}, now=at)
        entity = rollouts.get(d.raw_tables, ENDPOINT, rid)
        assert entity is not None
        status = "failed" if i % 10 == 3 else "done"
        rollouts.finish(d.raw_tables, entity, "", now=at + 60, status=status, reason=f"rollout {i} {status}")


def test_a_thousand_rollouts_and_a_year_of_hourly_windows_are_shown_a_page_at_a_time(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path)
    now = time.time()
    _thousand_rollouts(d, now)
    hourly_decisions(d, 365 * 24, start=now - 365 * 24 * HOUR - HOUR, violating_from=365 * 24 - 5)
    # Bounded queries, not a clock: what rendering the page reads from storage is a page of the
    # rollouts' time index and a point read per rollout on it, the newest 48 decisions and a few
    # point reads, however long the history is.
    reads = Counted(d.raw_tables)
    model_page.render(reads, d.deps.policy(), MODEL, "prod", limit=50, continuation=None,  # type: ignore[arg-type]
                      older=None)
    assert reads.entities <= 2 * 50 + 48 + 10 and reads.pages <= 10, (reads.entities, reads.pages)
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/model?model={MODEL}&environment=prod&limit=50&code={HOST_KEY}")
        assert page.locator("h2:has-text('Rollouts') + table tbody tr").count() == 50
        first_ids = page.locator("h2:has-text('Rollouts') + table tbody tr td:first-child").all_inner_texts()
        created = page.locator("h2:has-text('Rollouts') + table tbody tr td:nth-child(5)").all_inner_texts()
        assert created == sorted(created, reverse=True) and len(set(created)) == 50  # newest first
        plot = page.locator('svg.plot[data-check="psi(trip_distance)"]')
        assert plot.locator("circle").count() == 48 and plot.locator("line.threshold").count() == 1
        assert plot.locator("circle.violation").count() == 5
        assert "48 decisions" in page.inner_text("body")
        shot(page, "paging-model")
        follow(page, "a.next")
        next_ids = page.locator("h2:has-text('Rollouts') + table tbody tr td:first-child").all_inner_texts()
        assert len(next_ids) == 50 and not set(next_ids) & set(first_ids)
        follow(page, "a.older")
        plot = page.locator('svg.plot[data-check="psi(trip_distance)"]')
        assert plot.locator("circle").count() == 48 and plot.locator("circle.violation").count() == 0
        assert page.locator("a.older").count() == 1
        shot(page, "paging-older-windows")
        overview = open_page(browser, f"{base}/page?code={HOST_KEY}")
        assert "monitor: version 1 violation" in overview.inner_text("body")
        # To the last page: every page holds rollouts (never the lease or index entries alone),
        # each once, newest first across the pages, and the last has no "Next".
        page = open_page(browser, f"{base}/model?model={MODEL}&environment=prod&limit=200&code={HOST_KEY}")
        seen: list[str] = []
        versions: list[int] = []
        while True:
            ids = page.locator("h2:has-text('Rollouts') + table tbody tr td:first-child").all_inner_texts()
            assert ids, "an empty page of rollouts"
            seen += ids
            versions += [int(v) for v in
                         page.locator("h2:has-text('Rollouts') + table tbody tr td:nth-child(2)").all_inner_texts()]
            if page.locator("a.next").count() == 0:
                break
            follow(page, "a.next")
        assert len(seen) == len(set(seen)) == 1000
        assert versions == list(range(1000, 0, -1))  # rollout i+1 was created after rollout i


def _canary_decisions(d: Driver, n: int, *, start: float) -> None:
    """``n`` hourly rounds during a canary: the monitor judges each served version on its own
    (v1 the champion near 0, v2 the candidate near 0.94, as on the demo), and ``rmse`` has no
    labels yet (value None), and a row count in the thousands."""
    for i in range(n):
        end = start + (i + 1) * HOUR
        for version, ks in (("1", 0.0 + 0.001 * i), ("2", 0.938)):
            verdict = "violation" if ks > 0.3 else "ok"
            figures = [Figure("ks(prediction)", ks, 0.3, 0.25, "above", 500, verdict, "ks(prediction)").as_dict(),
                       Figure("rmse", None, 4.0, 3.5, "above", 0, "insufficient_data", "rmse").as_dict(),
                       Figure("rows(pickup)", 1234.0 + i, 1000.0, 900.0, "below", 500, "ok", "rows").as_dict()]
            monitor_store.record_decision(d.raw_tables, ENDPOINT, {
                "model": MODEL, "environment": "prod", "version": version, "verdict": verdict,
                "reason": "canary round", "action": None, "figures": figures,
                "window": {"start": end - HOUR, "end": end}, "windows": []}, now=end + int(version))


def test_a_canary_s_versions_are_one_line_each_named_with_empty_charts_noted_and_readable_axes(
        browser, tmp_path: Path) -> None:
    d = Driver(tmp_path)
    deploy(d, d.registry.register())
    d.run()
    _canary_decisions(d, 6, start=time.time() - 7 * HOUR)
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/model?model={MODEL}&environment=prod&code={HOST_KEY}")
        ks = page.locator('svg.plot[data-check="ks(prediction)"]')
        ks.wait_for()
        assert ks.locator("g.series").count() == 2 and ks.locator("polyline").count() == 2
        assert ks.locator("g.legend-entry text").all_text_contents() == ["v1", "v2"]
        for version in ("1", "2"):
            line = ks.locator(f'g.series[data-version="{version}"]')
            titles = line.locator("circle title").all_text_contents()
            assert len(titles) == 6 and all(t.startswith(f"v{version} · ") for t in titles), titles
        # v2's points all lie above the threshold, v1's all below: the lines never cross it.
        assert ks.locator('g.series[data-version="2"] circle.violation').count() == 6
        assert ks.locator('g.series[data-version="1"] circle.violation').count() == 0
        rmse = page.locator('svg.plot[data-check="rmse"]')
        note = rmse.locator("text.empty")
        assert note.is_visible() and "No value yet" in (note.text_content() or "")
        assert rmse.locator("polyline").count() == 0
        rows = page.locator('svg.plot[data-check="rows(pickup)"]')
        labels = rows.locator("text.axis")
        assert not any("e+" in t for t in labels.all_text_contents()) and "," in (labels.first.text_content() or "")
        frame = rows.bounding_box()
        for i in range(labels.count()):  # drawn inside the plot, not cut at its left edge
            box = labels.nth(i).bounding_box()
            assert box is not None and frame is not None and box["x"] >= frame["x"], (box, frame)
        shot(page, "canary-drift")


def test_a_paused_or_failed_rollout_says_the_command_to_run_next_and_counts_steps_from_one(
        browser, tmp_path: Path) -> None:
    d = Driver(tmp_path, env=CANARY)
    _, v2 = first_version(d)
    deploy(d, v2)
    run_until(d, lambda: live(d).get("step") == "bake" and live(d)["weight"] == 10)
    steer(d, "pause", "pause-1", reason="latency alarm")
    run_until(d, lambda: live(d).get("paused"))
    drain(d)
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/page?code={HOST_KEY}")
        hint = page.locator("div.hint")
        assert hint.count() == 1
        commands = hint.locator("code").all_inner_texts()
        assert commands[:2] == [f"reactor resume {MODEL} prod --wait", f"reactor promote {MODEL} prod --wait"]
        assert any(c.startswith(f"reactor abort {MODEL} prod") for c in commands)
        assert "step 1 (bake)" in page.inner_text("body")  # the first traffic step, counted from 1
        follow(page, 'a[href*="status/rollout"]')
        assert page.locator("div.hint code").first.inner_text() == f"reactor resume {MODEL} prod --wait"
        shot(page, "paused-hint")


def test_the_page_refreshes_itself_only_when_asked(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path)
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/page?code={HOST_KEY}")
        toggle = page.locator("#refresh-toggle")
        assert toggle.inner_text() == "Refresh every 30 s" and "refresh=30" in (toggle.get_attribute("href") or "")
        follow(page, "#refresh-toggle")
        assert "refresh=30" in page.url and page.locator("#refresh-toggle").inner_text().startswith("Stop refreshing")
        # Links carry the period on, as they carry the key.
        assert "refresh=30" in (page.locator('nav a[href*="rejections"]').get_attribute("href") or "")
        page.goto(f"{base}/page?code={HOST_KEY}&refresh=2")
        with page.expect_navigation(timeout=20_000) as nav:  # the reload itself, an event
            pass
        assert nav.value is not None and nav.value.status == 200
        follow(page, "#refresh-toggle")
        assert "refresh" not in page.url
        bad = requests.get(f"{base}/page?refresh=1", headers={"x-functions-key": HOST_KEY}, timeout=30)
        assert bad.status_code == 400 and "refresh must be a whole number of seconds from 2 to 3600" in bad.text


def test_without_the_key_a_page_of_its_own_says_how_to_pass_it(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path)
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/key")  # anonymous: no key needed to read how to pass one
        text = page.inner_text("body")
        assert "?code=KEY" in text and "x-functions-key: KEY" in text and "401" in text
        assert HOST_KEY not in page.content()
        page.fill("input[name=code]", HOST_KEY)
        with page.expect_navigation() as nav:
            page.click("button[type=submit]")
        assert nav.value is not None and nav.value.status == 200
        assert "Models and environments" in page.inner_text("body")


def test_rejections_page_on_without_empty_pages_newest_first(browser, tmp_path: Path) -> None:
    d = Driver(tmp_path)
    # 30 rejected records received in turn, their keys in the reverse order (key order is the
    # wrong order), of two kinds, among 150 that were done.
    for i in range(30):
        kind, key = ("command", "event")[i % 2], journal.key("id", f"a{29 - i:03d}")
        journal.record(d.raw_tables, kind, key, "accepted")
        stored = d.raw_tables.get(journal.TABLE, kind, key)
        assert stored is not None  # received a second apart, whatever the clock's resolution
        d.raw_tables.update(journal.TABLE, Entity(kind, key, {**stored.data, "received_at": 1e9 + i}, stored.etag))
        journal.update(d.raw_tables, kind, key, "rejected", reason=f"bad {i}")
    for i in range(150):
        journal.record(d.raw_tables, "command", journal.key("id", f"b{i:03d}"), "done")
    with serve(d, tmp_path) as base:
        page = open_page(browser, f"{base}/rejections?limit=20&code={HOST_KEY}")
        section = "h2:has-text('Rejected events') + table tbody tr"
        first = page.locator(f"{section} td:nth-child(3)").all_inner_texts()
        assert first == [journal.key("id", f"a{i:03d}") for i in range(20)]  # newest first
        follow(page, "a.next")
        rest = page.locator(f"{section} td:nth-child(3)").all_inner_texts()
        assert rest == [journal.key("id", f"a{i:03d}") for i in range(20, 30)]  # and across pages
        assert page.locator("a.next").count() == 0  # none older
        shot(page, "rejections-paging")
