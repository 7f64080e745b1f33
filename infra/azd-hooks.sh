#!/bin/sh
# The Azure Developer CLI's hooks (azure.yaml). azd runs them with its environment's values as variables.
#   preprovision   checks DATABRICKS_HOST and makes the two webhook secrets when the environment has none
#                  (32 random bytes, hex, kept in .azure/<env>/.env, which git ignores); never prints them.
#   postprovision  prints exactly what remains on the Databricks side, with this deployment's values
#                  (docs/deploy.md, sections 6 to 8).
set -eu

preprovision() {
  if [ -z "${DATABRICKS_HOST:-}" ]; then
    echo "azd env set DATABRICKS_HOST https://adb-<id>.<n>.azuredatabricks.net   # the workspace URL, then azd up again" >&2
    exit 1
  fi
  for name in MLFLOW_WEBHOOK_SECRET DATABRICKS_WEBHOOK_SECRET; do
    if [ -z "$(azd env get-value "$name" 2>/dev/null || true)" ]; then
      azd env set "$name" "$(openssl rand -hex 32)" > /dev/null
      echo "made $name in the azd environment (azd env get-value $name shows it)"
    fi
  done
}

postprovision() {
  sp="$REACTOR_IDENTITY_CLIENT_ID"
  # The models the policy serves (policy.yaml: models[].name), for the grants.
  models=$(sed -n 's/^  - name: *//p' policy.yaml)
  cat <<TEXT

Azure is ready: $AZURE_FUNCTION_APP_NAME in $AZURE_RESOURCE_GROUP ($REACTOR_APP_URL).
What remains on the Databricks side (docs/deploy.md, sections 6 and 7):

1. Add the app's identity as a service principal (a Databricks account or workspace admin):
     databricks service-principals create --json '{"applicationId": "$sp", "displayName": "modelops-reactor",
       "entitlements": [{"value": "workspace-access"}, {"value": "databricks-sql-access"}]}'

2. Unity Catalog privileges (the catalog's owner or a metastore admin), per model of policy.yaml:
TEXT
  for model in $models; do
    case "$model" in
      *.*.*)
        catalog=${model%%.*}
        schema=${model#*.}; schema=${schema%%.*}
        echo "     GRANT USE CATALOG ON CATALOG $catalog TO \`$sp\`;"
        echo "     GRANT USE SCHEMA ON SCHEMA $catalog.$schema TO \`$sp\`;"
        echo "     GRANT EXECUTE ON FUNCTION $model TO \`$sp\`;   -- a model is granted as a function" ;;
      *)
        echo "     $model is not catalog.schema.model: a workspace-registry model, no Unity Catalog grant" ;;
    esac
  done
  cat <<TEXT
   and, to move aliases, make the service principal (or a group it is in) the owner of each model.

3. The registry webhook: none for Unity Catalog models (the registry watcher polls). For an MLflow 3
   server or the workspace registry, register
     $REACTOR_WEBHOOK_URL
   with the secret from: azd env get-value MLFLOW_WEBHOOK_SECRET (or DATABRICKS_WEBHOOK_SECRET).

4. Check the app: the operators' status, which also says whether each webhook secret resolved:
     curl -s "$REACTOR_APP_URL/api/status?code=\$(az functionapp keys list -g $AZURE_RESOURCE_GROUP -n $AZURE_FUNCTION_APP_NAME --query functionKeys.default -o tsv)"
TEXT
}

case "${1:-}" in
  preprovision) preprovision ;;
  postprovision) postprovision ;;
  *) echo "usage: $0 preprovision|postprovision" >&2; exit 2 ;;
esac
