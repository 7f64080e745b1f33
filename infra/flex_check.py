"""Checks Bicep templates against the Flex Consumption deprecation list, without the Bicep CLI.

Microsoft Learn, "App settings reference for Azure Functions", section "Flex Consumption plan
deprecations" (https://learn.microsoft.com/en-us/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations)
lists the site properties and app settings a Flex Consumption app must not carry; ARM refuses
some of them outright (``siteConfig.ftpsState``: error 51021 on the stamps that enforce it,
reported in microsoft/azure-pipelines-tasks issue 21032), and the others are ignored or clash
with ``functionAppConfig``. Only the entries of that table are listed here, plus
``WEBSITE_TIME_ZONE``/``TZ`` (Microsoft Learn, "Azure Functions Flex Consumption plan hosting",
https://learn.microsoft.com/en-us/azure/azure-functions/flex-consumption-plan: not supported).

A Flex Consumption app is a ``Microsoft.Web/sites`` resource with ``properties.functionAppConfig``
(the section only Flex has). Its property keys are compared wherever they sit under
``properties`` (the table names them ``properties.<name>``; a template sets most of them under
``properties.siteConfig``), case-insensitively as ARM reads them. App setting names are found
where a template can write them: keys of the template's object variables (an app-setting map
turned into ``appSettings`` by a loop, as infra/main.bicep does) and ``name`` values of
``appSettings`` entries.

Run by infra/check.sh with the checkov environment's Python, where ``pycep`` (checkov's Bicep
parser) is installed: ``python infra/flex_check.py infra/main.bicep``. Exit status 1 names each
finding; :func:`violations` is the pure check of a parsed template.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# The table's site properties (by their last name segment, lower case) and its reason.
DEPRECATED_PROPERTIES = {
    "ftpsstate": "FTPS not supported",
    "use32bitworkerprocess": "32-bit not supported",
    "isreserved": "not valid",
    "isxenon": "not valid",
    "windowsfxversion": "not valid",
    "alwayson": "not valid",
    "prewarmedinstancecount": "replaced by functionAppConfig.scaleAndConcurrency.alwaysReady",
    "functionappscalelimit": "replaced by functionAppConfig.scaleAndConcurrency.maximumInstanceCount",
    "containersize": "replaced by functionAppConfig.scaleAndConcurrency.instanceMemoryMB",
    "javaversion": "replaced by functionAppConfig.runtime.version",
    "powershellversion": "replaced by functionAppConfig.runtime.version",
    "netframeworkversion": "replaced by functionAppConfig.runtime.version",
    "linuxfxversion": "replaced by functionAppConfig.runtime",
}
DEPRECATED_APP_SETTINGS = {
    "WEBSITE_NODE_DEFAULT_VERSION": "replaced by functionAppConfig.runtime.version",
    "FUNCTIONS_EXTENSION_VERSION": "set by the platform",
    "FUNCTIONS_WORKER_RUNTIME": "replaced by functionAppConfig.runtime.name",
    "FUNCTIONS_WORKER_RUNTIME_VERSION": "replaced by functionAppConfig.runtime.version",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT": "replaced by functionAppConfig.scaleAndConcurrency"
                                                 ".maximumInstanceCount",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "replaced by functionAppConfig.deployment",
    "WEBSITE_CONTENTSHARE": "replaced by functionAppConfig.deployment",
    "WEBSITE_RUN_FROM_PACKAGE": "not used: the package is in functionAppConfig.deployment",
    "ENABLE_ORYX_BUILD": "not used: remote build is a deployment option",
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "not used: remote build is a deployment option",
    "WEBSITE_TIME_ZONE": "not supported on Flex Consumption",
    "TZ": "not supported on Flex Consumption",
}


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every key of nested dicts and lists."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{path}.{key}"
            yield here, str(key), value
            yield from _walk(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _is_flex_site(resource: Mapping[str, Any]) -> bool:
    properties = (resource.get("config") or {}).get("properties") or {}
    return str(resource.get("type", "")).lower() == "microsoft.web/sites" and "functionAppConfig" in properties


def violations(template: Mapping[str, Any]) -> list[str]:
    """What a parsed template (pycep's JSON) sets that Flex Consumption deprecates, one line each."""
    resources = template.get("resources") or {}
    flex = {name: r for name, r in resources.items() if _is_flex_site(r)}
    out = []
    for name, resource in flex.items():
        properties = resource["config"]["properties"]
        for path, key, value in _walk(properties, "properties"):
            if key.lower() in DEPRECATED_PROPERTIES:
                out.append(f"resource {name}: {path} ({DEPRECATED_PROPERTIES[key.lower()]})")
            if key == "name" and isinstance(value, str) and ".appSettings" in path \
                    and value.upper() in DEPRECATED_APP_SETTINGS:
                out.append(f"resource {name}: app setting {value} ({DEPRECATED_APP_SETTINGS[value.upper()]})")
    if flex:
        for var, spec in (template.get("variables") or {}).items():
            for path, key, _ in _walk(spec.get("value"), f"var {var}"):
                if key.upper() in DEPRECATED_APP_SETTINGS:
                    out.append(f"{path}: app setting {key} ({DEPRECATED_APP_SETTINGS[key.upper()]})")
    return out


def main(paths: list[str]) -> int:
    from pycep import BicepParser  # checkov's parser, in its environment only (infra/check.sh)

    found = 0
    for path in paths:
        for line in violations(BicepParser().parse(file_path=Path(path))):
            print(f"{path}: Flex Consumption deprecates {line}", file=sys.stderr)
            found += 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
