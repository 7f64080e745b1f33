// The Azure Developer CLI's entry point (azure.yaml: `azd up` provisions with this file, then deploys the
// code; `azd down` deletes the resource group). It makes the resource group, tagged azd-env-name, and
// deploys infra/main.bicep into it unchanged; `az deployment group create` on main.bicep stays the plain
// path (docs/deploy.md). azd fills the parameters from infra/azd.parameters.json: AZURE_ENV_NAME,
// AZURE_LOCATION and AZURE_PRINCIPAL_ID (the signed-in user) it sets itself; DATABRICKS_HOST and the two
// webhook secrets come from the azd environment (infra/azd-hooks.sh makes the secrets before provisioning).
// Its outputs become azd environment values, which the post-provision step prints (infra/azd-hooks.sh).
//
// Microsoft Learn, "Azure Developer CLI's azure.yaml schema",
// https://learn.microsoft.com/en-us/azure/developer/azure-developer-cli/azd-schema; the tags follow Microsoft's
// Flex Consumption azd sample, Azure-Samples/functions-quickstart-python-http-azd (azd-env-name on the
// resource group, azd-service-name on the Function App).

targetScope = 'subscription'

@description('azd environment name: the resource group is rg-<name>.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Region of every resource; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
param location string

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID): granted the data roles the guide uses.')
param principalId string = ''

@description('Workspace URL, https://adb-<id>.<n>.azuredatabricks.net.')
param databricksHost string

@secure()
@minLength(32)
param mlflowWebhookSecret string

@secure()
@minLength(32)
param databricksWebhookSecret string

var tags = {
  'azd-env-name': environmentName
  app: 'modelops-reactor'
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module reactor 'main.bicep' = {
  name: 'modelops-reactor'
  scope: rg
  params: {
    location: location
    databricksHost: databricksHost
    mlflowWebhookSecret: mlflowWebhookSecret
    databricksWebhookSecret: databricksWebhookSecret
    deployerPrincipalId: principalId
    deployerPrincipalType: 'User'
    tags: tags
    appTags: {
      'azd-service-name': 'api'
    }
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = reactor.outputs.functionAppName
output REACTOR_APP_URL string = reactor.outputs.appUrl
output REACTOR_WEBHOOK_URL string = reactor.outputs.webhookUrl
output REACTOR_IDENTITY_CLIENT_ID string = reactor.outputs.identityClientId
output REACTOR_KEY_VAULT_NAME string = reactor.outputs.keyVaultName
output REACTOR_STORAGE_ACCOUNT_NAME string = reactor.outputs.storageAccountName
