"""Storage connections are resolved as the Functions host resolves them, and a setting that
cannot work stops the app at start with one error naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.host import HostStartError, LocalHost
from local.stack import app_settings
from shared.connections import ConnectionSettingError, development_storage, resolve
from shared.settings import APP_ROOT, SettingError, Settings, default_sqlite_path
from shared.startup import check

AZURITE = development_storage()


def settings(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = app_settings(data_dir=tmp_path, policy=APP_ROOT / "policy.yaml", mlflow_url="http://127.0.0.1:1",
                        workspace_url="http://127.0.0.1:2")
    base.update(extra)
    return {k: v for k, v in base.items() if v != "<unset>"}


# ------------------------------------------------------------------ how a connection resolves
def test_a_connection_string_wins_and_the_prefixed_setting_first():
    env = {"AzureWebJobsStorage": AZURITE, "AzureWebJobsStorage__accountName": "ignored"}
    assert resolve("AzureWebJobsStorage", env).connection_string == AZURITE
    # A binding that names "Storage" reads AzureWebJobsStorage first (the WebJobs SDK prefix).
    both = {"AzureWebJobsStorage": AZURITE, "Storage": "UseDevelopmentStorage=true"}
    assert resolve("Storage", both).setting == "AzureWebJobsStorage"
    assert resolve("Storage", {"Storage": "UseDevelopmentStorage=true"}).setting == "Storage"


def test_development_storage_is_expanded_for_both_sdks():
    for text in ("UseDevelopmentStorage=true", "UseDevelopmentStorage=true;", "UseDevelopmentStorage=True"):
        assert resolve("AzureWebJobsStorage", {"AzureWebJobsStorage": text}).connection_string == AZURITE


def test_identity_based_connections():
    acct = resolve("AzureWebJobsStorage", {"AzureWebJobsStorage__accountName": "reactorprod",
                                           "AzureWebJobsStorage__credential": "managedidentity",
                                           "AzureWebJobsStorage__clientId": "1111-2222"})
    assert (acct.queue_url, acct.table_url) == ("https://reactorprod.queue.core.windows.net",
                                                "https://reactorprod.table.core.windows.net")
    assert (acct.credential, acct.client_id, acct.connection_string) == ("managedidentity", "1111-2222", None)
    uris = resolve("Jobs", {"Jobs__queueServiceUri": "https://a.queue.core.windows.net/",
                            "Jobs__tableServiceUri": "https://a.table.core.windows.net"})
    assert (uris.queue_url, uris.table_url, uris.credential) == (
        "https://a.queue.core.windows.net", "https://a.table.core.windows.net", None)
    assert resolve("Jobs", {"Jobs__serviceUri": "https://a.queue.core.windows.net"}).queue_url.startswith("https://a")
    local = resolve("Jobs", {"Jobs__queueServiceUri": "https://a.queue.core.windows.net", "Jobs__tenantId": "t",
                             "Jobs__clientId": "c", "Jobs__clientSecret": "s3cret"})
    assert local.credential == "clientsecret" and "s3cret" not in repr(local)


def test_clients_get_the_credential_the_settings_name():
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    mi = resolve("AzureWebJobsStorage", {"AzureWebJobsStorage__accountName": "reactorprod",
                                         "AzureWebJobsStorage__credential": "managedidentity",
                                         "AzureWebJobsStorage__clientId": "1111-2222"})
    queues, tables = mi.queue_service(), mi.table_service()
    assert isinstance(queues.credential, ManagedIdentityCredential)
    assert queues.account_name == "reactorprod" and tables.account_name == "reactorprod"
    dev = resolve("AzureWebJobsStorage", {"AzureWebJobsStorage__accountName": "reactorprod"})
    assert isinstance(dev.queue_service().credential, DefaultAzureCredential)
    only_queues = resolve("Jobs", {"Jobs__queueServiceUri": "https://a.queue.core.windows.net"})
    with pytest.raises(ConnectionSettingError, match="Jobs__tableServiceUri"):
        only_queues.table_service()


@pytest.mark.parametrize(("env", "setting"), [
    ({}, "AzureWebJobsStorage"),
    ({"AzureWebJobsStorage": "not a connection string"}, "AzureWebJobsStorage"),
    ({"AzureWebJobsStorage__accountName": "Bad_Name"}, "AzureWebJobsStorage__accountName"),
    ({"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__credential": "password"},
     "AzureWebJobsStorage__credential"),
    ({"AzureWebJobsStorage__queueServiceUri": "ftp://x"}, "AzureWebJobsStorage__queueServiceUri"),
    ({"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__clientId": "a",
      "AzureWebJobsStorage__managedIdentityResourceId": "/subscriptions/x"}, "AzureWebJobsStorage__clientId"),
    ({"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__tenantId": "t"},
     "AzureWebJobsStorage__clientId"),
    ({"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__credential": "managedidentity",
      "AzureWebJobsStorage__tenantId": "t", "AzureWebJobsStorage__clientId": "c",
      "AzureWebJobsStorage__clientSecret": "s"}, "AzureWebJobsStorage__clientSecret"),
    ({"AzureWebJobsStorage__clientId": "c"}, "AzureWebJobsStorage__queueServiceUri"),
])
def test_malformed_connection_settings_name_the_setting(env, setting):
    with pytest.raises(ConnectionSettingError) as err:
        resolve("AzureWebJobsStorage", env)
    assert err.value.setting == setting and setting in str(err.value)
    assert "Eby8" not in str(err.value)


def test_account_name_is_only_for_azure_web_jobs_storage():
    with pytest.raises(ConnectionSettingError, match="Jobs__accountName"):
        resolve("Jobs", {"Jobs__accountName": "acct"})


# ------------------------------------------------------------------ where state lives
def test_sqlite_default_lives_outside_the_app_folder(tmp_path):
    env = {"HOME": str(tmp_path)}
    url = Settings.from_env(env).storage
    assert url == f"sqlite:///{tmp_path}/.local/state/modelops-reactor/reactor.db"
    assert not Path(url[len("sqlite:///"):]).resolve().is_relative_to(APP_ROOT)
    assert default_sqlite_path({"REACTOR_DATA_DIR": "/var/reactor"}) == Path("/var/reactor/reactor.db")


def test_in_azure_the_default_is_azure_storage_and_sqlite_is_refused():
    azure = {"WEBSITE_INSTANCE_ID": "abc", "AzureWebJobsStorage__accountName": "acct"}
    assert Settings.from_env(azure).storage == "azure"
    with pytest.raises(SettingError, match="REACTOR_STORAGE") as err:
        Settings.from_env({**azure, "REACTOR_STORAGE": "sqlite:////tmp/x.db"})
    assert err.value.setting == "REACTOR_STORAGE"
    # The Functions host (FUNCTIONS_WORKER_RUNTIME) with a storage connection is Azure too.
    with pytest.raises(SettingError, match="REACTOR_STORAGE"):
        Settings.from_env({"FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": AZURITE,
                           "REACTOR_STORAGE": "sqlite:////tmp/x.db"})



# ------------------------------------------------------------------ the app stops at start
@pytest.mark.parametrize(("extra", "setting"), [
    ({"WEBSITE_INSTANCE_ID": "i-1", "REACTOR_STORAGE": "<unset>"}, "AzureWebJobsStorage"),  # no connection
    ({"WEBSITE_INSTANCE_ID": "i-1", "REACTOR_STORAGE": "azure", "AzureWebJobsStorage__accountName": "acct",
      "AzureWebJobsStorage__credential": "certificate"}, "AzureWebJobsStorage__credential"),
    ({"REACTOR_REPAIR_SCHEDULE": "<unset>"}, "REACTOR_REPAIR_SCHEDULE"),
    ({"REACTOR_MONITOR_SCHEDULE": "<unset>"}, "REACTOR_MONITOR_SCHEDULE"),
    ({"REGISTRY_WATCH_SCHEDULE": "every five minutes"}, "REGISTRY_WATCH_SCHEDULE"),
    ({"ROLLOUT_BACKOFF_BASE_SECONDS": "two"}, "ROLLOUT_BACKOFF_BASE_SECONDS"),
    ({"REACTOR_STORAGE": "postgres://x"}, "REACTOR_STORAGE"),
])
def test_a_bad_setting_stops_the_app_at_start_naming_it(tmp_path, extra, setting):
    env = settings(tmp_path, **extra)
    with pytest.raises(SettingError) as err:
        check(env)
    assert err.value.setting == setting
    # The same through the worker's import of function_app: one error, naming the setting.
    run = subprocess.run([sys.executable, "-c", "import function_app"], cwd=APP_ROOT, capture_output=True,
                         text=True, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env})
    assert run.returncode != 0 and f"app setting {setting}" in run.stderr.splitlines()[-1]


def test_the_local_host_refuses_to_start_with_a_bad_setting(tmp_path, monkeypatch):
    for name, value in settings(tmp_path, REGISTRY_WATCH_SCHEDULE="<unset>").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REGISTRY_WATCH_SCHEDULE", raising=False)
    with pytest.raises(HostStartError, match="REGISTRY_WATCH_SCHEDULE"):
        LocalHost(app_dir=APP_ROOT, port=0, unique_module_name=True).start()


def test_good_settings_pass(tmp_path):
    assert check(settings(tmp_path)).storage.startswith("sqlite:///")
    assert check(settings(tmp_path, REACTOR_STORAGE="azure", AzureWebJobsStorage=AZURITE)).storage == "azure"
