"""The main scenario on Azure Storage: a signed registry webhook reaches the real function_app
on the local host, whose queue triggers listen on the ``AzureWebJobsStorage`` connection
resolved as the Functions host resolves it, here Azurite; the rollout publishes the model's
features, serves the version and moves its alias, with every record and lease in Azure Tables.
"""

from __future__ import annotations

import base64

from shared import rollouts
from shared.queues import COMMANDS_QUEUE, ROLLOUT_QUEUE
from shared.storage import open_tables
from tests.test_feature_rollouts import create_zone_tables, register_zone_model, zone_app


def test_a_signed_webhook_rolls_a_version_with_features_out_through_azure_storage(make_app, zones, azurite):
    pickup_df, dropoff_df = zones
    app, holder = zone_app(make_app, storage="azurite")
    assert app.settings["REACTOR_STORAGE"] == "azure" and "AzureWebJobsStorage" in app.settings
    create_zone_tables(app.plat.workspace, app.tag, pickup_df, dropoff_df)
    v = register_zone_model(app, holder["pickup"], holder["dropoff"], pickup_df, dropoff_df)

    answer = app.post_webhook(app.webhook_body(v))
    assert answer.status_code == 202, answer.text
    row = app.wait_rollout_end(v, timeout=120)
    assert row["status"] == "done", row
    steps = [h["step"] for h in row["history"]]
    assert steps.index("features") < steps.index("deploy") < steps.index("promote")
    assert app.serving() == [v] and app.champion() == v

    # The state is in Azure Tables (read with a client of our own), the queues are drained.
    mine = open_tables("azure", {"AzureWebJobsStorage": azurite.connection_string})
    lease = rollouts.lease(mine, app.endpoint)
    assert lease["serving_version"] == v and not lease.get("active")
    events = [r for r in app.records("event") if r.get("event", {}).get("model") == app.model]
    app.wait(lambda: app.host.wait_idle(5), 30, "the host to go idle")
    assert [e["status"] for e in events] == ["done"], events
    assert app.queues.count(COMMANDS_QUEUE) == 0 and app.queues.count(ROLLOUT_QUEUE) == 0
    # Nothing of this scenario went to poison: producers wrote the base64 JSON the trigger reads.
    for message in app.queues.peek(COMMANDS_QUEUE + "-poison") + app.queues.peek(ROLLOUT_QUEUE + "-poison"):
        assert app.model not in base64.b64decode(message.content).decode(errors="replace")
