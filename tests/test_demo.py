"""The closed-loop demo is the product's scenario test through the real stack: a real MLflow
server's signed webhooks, the Function App on the local host, the local workspace through
databricks-sdk (serving, Unity Catalog tables, SQL, the Jobs API). From a first version to drift,
retraining and the retrained version as Champion, every expectation it prints must hold."""

from __future__ import annotations

import re

from local import demo


def test_the_demo_closes_the_loop_from_first_version_to_retrained_champion(tmp_path, capsys):
    code = demo.run(tmp_path / "demo")
    out = capsys.readouterr().out
    assert code == 0, out
    held = re.search(r"(\d+) of (\d+) expectations held", out)
    assert held and held.group(1) == held.group(2) and int(held.group(2)) >= 20, out
