"""infra/main.bicep sets nothing Flex Consumption deprecates (infra/flex_check.py, after Microsoft
Learn, "App settings reference for Azure Functions", section "Flex Consumption plan deprecations",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations).

The real template is parsed by pycep, checkov's Bicep parser, which lives in the checkov
environment infra/check.sh makes (CI runs it before the tests); the check's own logic is tested
here on parsed templates in pycep's shape.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "main.bicep"
CHECKOV_PYTHON = ROOT / ".local" / "checkov-venv" / "bin" / "python"

_spec = importlib.util.spec_from_file_location("flex_check", ROOT / "infra" / "flex_check.py")
assert _spec and _spec.loader
flex_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flex_check)


def _site(properties: dict) -> dict:
    return {"type": "Microsoft.Web/sites", "config": {"name": "app", "properties": properties}}


def test_each_deprecated_property_and_setting_of_a_flex_app_is_named():
    flex = _site({"functionAppConfig": {"runtime": {"name": "python"}},
                  "siteConfig": {"ftpsState": "Disabled", "AlwaysOn": True, "minTlsVersion": "1.2",
                                 "appSettings": [{"name": "WEBSITE_RUN_FROM_PACKAGE", "value": "1"},
                                                 {"name": "MLFLOW_WEBHOOK_SECRET", "value": ""}]}})
    template = {"resources": {"site": flex},
                "variables": {"names": {"value": {"FUNCTIONS_WORKER_RUNTIME": "", "DATABRICKS_HOST": ""}}}}
    found = flex_check.violations(template)
    assert len(found) == 4, found
    for what in ("properties.siteConfig.ftpsState", "properties.siteConfig.AlwaysOn", "WEBSITE_RUN_FROM_PACKAGE",
                 "FUNCTIONS_WORKER_RUNTIME"):
        assert any(what in line for line in found), (what, found)


def test_other_plans_may_keep_them():
    # Without functionAppConfig the site is not Flex: ftpsState is right there.
    dedicated = _site({"siteConfig": {"ftpsState": "Disabled"}})
    assert flex_check.violations({"resources": {"web": dedicated},
                                  "variables": {"s": {"value": {"WEBSITE_RUN_FROM_PACKAGE": "1"}}}}) == []


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    # pycep lives in checkov's environment: made here when missing, as infra/check.sh makes it.
    subprocess.run(["bash", str(ROOT / "infra" / "checkov-env.sh")], check=True, timeout=900)
    return subprocess.run([str(CHECKOV_PYTHON), str(ROOT / "infra" / "flex_check.py"), str(path)],
                          capture_output=True, text=True, timeout=300)


def test_the_template_sets_nothing_flex_consumption_deprecates():
    done = _check(TEMPLATE)
    assert done.returncode == 0, done.stderr


def test_the_parsed_template_is_checked_where_the_property_sits(tmp_path):
    """What issue 21 found (``siteConfig.ftpsState``, ARM error 51021) is reported from the real
    template's parse, not only from a hand-made one."""
    text = TEMPLATE.read_text()
    anchor = "      minTlsVersion: '1.2'\n"
    assert text.count(anchor) == 1
    bad = tmp_path / "main.bicep"
    bad.write_text(text.replace(anchor, anchor + "      ftpsState: 'Disabled'\n"))
    done = _check(bad)
    assert done.returncode == 1 and "properties.siteConfig.ftpsState" in done.stderr, done.stderr


def _bicep_params(path: Path) -> dict[str, bool]:
    """``param`` name → whether it has a default, from a template's top-level declarations."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"param (\w+) \w+( =)?", line)
        if m:
            out[m.group(1)] = bool(m.group(2))
    return out


def test_the_azd_project_is_wired_to_files_that_exist():
    """azure.yaml (Azure Developer CLI) names infra/azd.bicep, whose parameters file gives exactly
    the parameters without a default, and hooks that exist; azd.bicep passes main.bicep every
    parameter main.bicep requires."""
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    infra = ROOT / project["infra"]["path"]
    entry = infra / f"{project['infra']['module']}.bicep"
    given = json.loads((infra / f"{project['infra']['module']}.parameters.json").read_text())["parameters"]
    required = {name for name, has_default in _bicep_params(entry).items() if not has_default}
    assert required <= set(given) <= set(_bicep_params(entry)), (required, set(given))
    for hook in project["hooks"].values():
        script = hook["posix"]["run"].split()[0]
        assert (ROOT / script).is_file(), script
    module = entry.read_text()
    passed = set(re.findall(r"^    (\w+):", module[module.index("module reactor 'main.bicep'"):], re.M))
    main_required = {name for name, has_default in _bicep_params(TEMPLATE).items() if not has_default}
    assert main_required <= passed, main_required - passed
    assert project["services"]["api"]["host"] == "function"
    assert "'azd-service-name': 'api'" in module and "'azd-env-name': environmentName" in module
