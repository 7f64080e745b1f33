#!/usr/bin/env bash
# Static checks of infra/*.bicep (and .github/workflows) with checkov; the Bicep CLI is a downloaded binary
# and does not run in CI.
# checkov lives in its own virtual environment, .local/checkov-venv, apart from the app's .venv: it has many
# dependencies that must not mix with the app's. The environment is made again only when it is missing or
# infra/requirements-checkov.txt changed.
# Exit status: non-zero when a check fails or a template cannot be parsed (CKV_PARSE_ERROR_FAIL: by default
# checkov reports a parsing error and still exits 0). Skips are inline `//checkov:skip=CKV_...: reason`
# comments in the templates.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.local/checkov-venv
# The environment (made again only when missing or its requirements changed): infra/checkov-env.sh.
infra/checkov-env.sh

# --skip-download: no calls to the vendor's platform (guidelines, custom policies); the checks are built in.
export CKV_PARSE_ERROR_FAIL=true
"$venv/bin/checkov" -d infra --framework bicep --skip-download --compact --quiet "$@"
# Nothing Flex Consumption deprecates (infra/flex_check.py; pycep is checkov's own Bicep parser).
"$venv/bin/python" infra/flex_check.py infra/*.bicep
# The deployment workflow too (permissions, untrusted input in scripts).
"$venv/bin/checkov" -d .github --framework github_actions --skip-download --compact --quiet "$@"
