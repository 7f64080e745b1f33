// ModelOps Reactor: the Function App on a Flex Consumption plan and what it needs, in one
// resource group. Deploy with
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.parameters.json \
//     -p databricksHost=https://adb-<id>.<n>.azuredatabricks.net \
//        mlflowWebhookSecret="$MLFLOW_WEBHOOK_SECRET" databricksWebhookSecret="$DATABRICKS_WEBHOOK_SECRET" \
//        deployerPrincipalId="$(az ad signed-in-user show --query id -o tsv)"
// or `azd up` (azure.yaml); docs/deploy.md walks through every step.
//
// What this file follows (Microsoft Learn pages; the keys are those of docs/deploy.md):
//   Flex Consumption:      "Azure Functions Flex Consumption plan hosting", https://learn.microsoft.com/en-us/azure/azure-functions/flex-consumption-plan
//   Functions connections: "Guidance for developing Azure Functions" (connections), https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference
//   Key Vault references: "Use Key Vault references as app settings in Azure App Service, Azure Functions, and Azure Logic Apps",
//        https://learn.microsoft.com/en-us/azure/app-service/app-service-key-vault-references
// - Flex Consumption: plan sku FC1 / tier FlexConsumption, Linux only, one app per plan; the runtime and
//   its version live in `functionAppConfig.runtime`, so FUNCTIONS_WORKER_RUNTIME and
//   FUNCTIONS_EXTENSION_VERSION are NOT app settings here (Flex rejects them); code is deployed to a blob
//   container that the app reads with the identity named in `functionAppConfig.deployment.storage`.
// - Identity-based host storage (Functions connections): AzureWebJobsStorage__accountName + __credential=managedidentity +
//   __clientId (a user-assigned identity); the account allows no shared-key access at all, so there is no
//   connection string anywhere. The host needs Storage Blob Data Owner (deployment package, host keys,
//   timer and singleton locks) and, for the queue triggers and their -poison queues, Storage Queue Data
//   Contributor. The app's state lives in tables of the same account: Storage Table Data Contributor.
// - Key Vault references: `@Microsoft.KeyVault(SecretUri=...)` app settings resolved with the
//   user-assigned identity named by the site's `keyVaultReferenceIdentity`, which holds Key Vault Secrets
//   User on the vault. A reference that cannot be resolved is handed to the app as its literal text, so
//   both secrets are always written by this template (they are required parameters) before the app starts;
//   the app refuses a value that is still a reference (shared/signatures.py, secret_state).
//
// Checked statically by checkov in CI (`.ci/run`), and against Flex Consumption's deprecated properties and
// settings by infra/flex_check.py (both from infra/check.sh); the Bicep CLI itself does not run there (see docs/deploy.md).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------------

@description('Azure region for every resource. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Short name the resource names are made from.')
@minLength(3)
@maxLength(30)
param appName string = 'modelops-reactor'

@description('Function App name; it becomes <name>.azurewebsites.net, so it must be globally unique.')
@maxLength(60)
param functionAppName string = '${appName}-${uniqueString(resourceGroup().id, appName)}'

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string = 'st${uniqueString(resourceGroup().id, appName)}'

@description('Key Vault name (3-24 characters, globally unique; a deleted vault keeps its name for the retention period).')
@minLength(3)
@maxLength(24)
param keyVaultName string = 'kv-${uniqueString(resourceGroup().id, appName)}'

@description('Storage redundancy. LRS works in every region; choose ZRS (or GZRS) where the region has availability zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_LRS'

@description('Python version of the Flex Consumption runtime (the app is built and tested on 3.11).')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('Memory of one instance in MB (Flex Consumption sizes: 512, 2048, 4096).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to (Flex Consumption allows up to 1000).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances, e.g. [{ name: \'http\', instanceCount: 1 }]; billed while idle. Default none.')
param alwaysReady array = []

@description('Days Log Analytics keeps the logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Azure Databricks workspace URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net')
param databricksHost string

@description('Where the app reads versions and aliases: databricks-uc (Unity Catalog), databricks (workspace registry) or an MLflow server URL.')
param mlflowRegistryUri string = 'databricks-uc'

@description('SQL warehouse id that checks and reads feature tables; needed when a model in policy.yaml has features. Empty: not set.')
param databricksWarehouseId string = ''

@description('NCRONTAB (seconds first) of the registry watcher.')
param registryWatchSchedule string = '0 */5 * * * *'

@description('NCRONTAB (seconds first) of the repair sweep.')
param repairSchedule string = '*/30 * * * * *'

@description('NCRONTAB (seconds first) of the monitor: each tick judges the monitoring windows that ended since the last.')
param monitorSchedule string = '0 */5 * * * *'

@description('Per-call retry budget of databricks-sdk, in seconds (DATABRICKS_RETRY_TIMEOUT_SECONDS).')
param databricksRetryTimeoutSeconds string = '60'

@description('REACTOR_STORAGE: the backend of the app\'s state and queues, azure or azure:<connection>. Empty: not written, and on a Function App the app then uses azure (the queues and tables of the AzureWebJobsStorage account).')
param reactorStorage string = ''

@description('Secret of the MLflow 3 registry webhook (X-MLflow-Signature). Stored in Key Vault; the app reads it through a Key Vault reference.')
@secure()
@minLength(32)
param mlflowWebhookSecret string

@description('Secret of the Databricks workspace registry webhook (X-Databricks-Signature). Stored in Key Vault; the app reads it through a Key Vault reference.')
@secure()
@minLength(32)
param databricksWebhookSecret string

@description('More app settings (name: value), e.g. ROLLOUT_BACKOFF_CAP_SECONDS or the connection setting of an rdbms online store (a Key Vault reference for anything secret). They cannot replace the settings this template writes.')
param additionalAppSettings object = {}

@description('Object id of the person or principal deploying (az ad signed-in-user show --query id; azd passes AZURE_PRINCIPAL_ID). When set, it gets the data roles the guide uses: Storage Queue Data Message Sender on the account (sending commands) and Key Vault Secrets Officer on the vault (reading and rotating the webhook secrets). Empty: none.')
param deployerPrincipalId string = ''

@description('Type of deployerPrincipalId: User for a person, ServicePrincipal for a pipeline identity.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

@description('Tags on every resource (infra/azd.bicep adds azd-env-name).')
param tags object = {
  app: appName
}

@description('More tags on the Function App alone (infra/azd.bicep: azd-service-name, by which azd finds the app to deploy to).')
param appTags object = {}

// ---------------------------------------------------------------------------------------------------------
// Names and built-in role definitions (ids from the Azure built-in roles list; they are the same in every tenant)
// ---------------------------------------------------------------------------------------------------------

var deploymentContainerName = 'app-package'
var queueNames = [
  'reactor-commands'
  'reactor-commands-poison'
  'reactor-rollout'
  'reactor-rollout-poison'
]
var mlflowSecretName = 'mlflow-webhook-secret' // Key Vault secret names allow letters, digits and dashes only
var databricksSecretName = 'databricks-webhook-secret'

var roles = {
  // Storage Blob Data Owner: the deployment container, host keys, timer/singleton locks (AzureWebJobsStorage)
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Storage Queue Data Contributor: read, delete and add messages (queue triggers, -poison queues, producers)
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Storage Table Data Contributor: the app's state tables
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Key Vault Secrets User: read secret contents (Key Vault references)
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // Monitoring Metrics Publisher: send telemetry to an Application Insights resource with local auth disabled
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Storage Queue Data Message Sender: the deployer's, to send commands (docs/deploy.md, "A first rollout")
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  // Key Vault Secrets Officer: the deployer's, to read and rotate the webhook secrets (docs/deploy.md, "The webhook secrets in Key Vault")
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

// ---------------------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------------
// Storage: host storage, deployment container, queues, state tables
// ---------------------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_43: the name is the storageAccountName parameter (3-24 characters by @minLength/@maxLength; its default, 'st' + uniqueString(), is 15 lowercase letters and digits), which checkov cannot evaluate
  //checkov:skip=CKV_AZURE_35: default action Allow is needed: a Flex Consumption app without VNet integration reaches its storage over the public endpoint; every request must still carry an Entra ID token (shared keys are disabled)
  //checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public network access stays on for a Flex app without VNet integration, with shared-key and anonymous access disabled
  //checkov:skip=CKV_AZURE_206: the replication is the storageSku parameter (LRS by default, since it exists in every Flex Consumption region; ZRS, GRS and GZRS allowed), which checkov cannot evaluate
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The host creates a missing -poison queue itself; creating all four here lets the poison triggers start
// listening at once and lets operators peek them from the first minute.
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for q in queueNames: {
  parent: queueService
  name: q
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource storageDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logs.id
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------------------
// Monitoring: Log Analytics + workspace-based Application Insights, Entra ID ingestion only
// ---------------------------------------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    // Telemetry is accepted only with an Entra ID token: the host sends it as the user-assigned identity
    // named in APPLICATIONINSIGHTS_AUTHENTICATION_STRING, which holds Monitoring Metrics Publisher below.
    DisableLocalAuth: true
  }
}

// The operators' workbook over the app's custom metrics and structured logs (infra/workbook.json; the
// metric names are shared/telemetry.py's, checked by tests/test_workbook.py). Its name is a GUID, as
// workbooks require, stable per resource group and app so that a redeployment updates it in place.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appName, 'workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'ModelOps Reactor (${appName})'
    category: 'workbook'
    // The file's fallbackResourceIds ("Azure Monitor") is for importing it by hand; deployed, it names this
    // Application Insights, so the queries have a component when the workbook is opened from the gallery.
    serializedData: string(union(loadJsonContent('workbook.json'), { fallbackResourceIds: [appInsights.id] }))
    sourceId: appInsights.id
  }
}

// ---------------------------------------------------------------------------------------------------------
// Key Vault with the webhook secrets
// ---------------------------------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109: default action Allow is needed: App Service resolves Key Vault references of an app without VNet integration over the vault's public endpoint; access is by Azure RBAC only
  //checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109: public network access stays on for Key Vault references from a Flex app without VNet integration
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource mlflowSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41: no expiry on purpose: an expired secret cannot be resolved, and App Service then hands the app the literal reference text as the secret; webhook secrets are rotated by redeploying with a new value (docs/deploy.md)
  parent: vault
  name: mlflowSecretName
  properties: {
    value: mlflowWebhookSecret
    contentType: 'text/plain'
  }
}

resource databricksSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41: no expiry on purpose, as for the MLflow webhook secret above
  parent: vault
  name: databricksSecretName
  properties: {
    value: databricksWebhookSecret
    contentType: 'text/plain'
  }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logs.id
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------------------
// Role assignments for the user-assigned identity
// ---------------------------------------------------------------------------------------------------------

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The deployer's own data roles (deployerPrincipalId), so that the guide's commands work as written.
resource deployerQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(storage.id, deployerPrincipalId, roles.storageQueueDataMessageSender)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------------------
// Flex Consumption plan and the Function App
// ---------------------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225: zone redundancy of Flex Consumption is a regional choice with at least two always-ready instances (billed); left to the operator (docs/deploy.md)
  name: 'plan-${appName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

// The template's own app settings. Some values are known only while deploying (the identity's client id,
// the connection string, the vault URI).
var baseAppSettings = {
  // Host storage, identity-based (no connection string; shared keys are disabled on the account).
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  // azure-identity's DefaultAzureCredential picks this user-assigned identity (Databricks tokens).
  AZURE_CLIENT_ID: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  DATABRICKS_HOST: databricksHost
  DATABRICKS_RETRY_TIMEOUT_SECONDS: databricksRetryTimeoutSeconds
  MLFLOW_REGISTRY_URI: mlflowRegistryUri
  REGISTRY_WATCH_SCHEDULE: registryWatchSchedule
  REACTOR_REPAIR_SCHEDULE: repairSchedule
  REACTOR_MONITOR_SCHEDULE: monitorSchedule
  // Key Vault references without a version (secretUri is the secret's current-version URI; secretUriWithVersion
  // would pin one): App Service follows the latest version of each secret.
  MLFLOW_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${mlflowSecret.properties.secretUri})'
  DATABRICKS_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${databricksSecret.properties.secretUri})'
}
// The same names with placeholder values: a for-expression must iterate over values known at the start of
// the deployment, so the loop below runs over these names and looks each value up in baseAppSettings.
var baseAppSettingNames = {
  AzureWebJobsStorage__accountName: ''
  AzureWebJobsStorage__credential: ''
  AzureWebJobsStorage__clientId: ''
  AZURE_CLIENT_ID: ''
  APPLICATIONINSIGHTS_CONNECTION_STRING: ''
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: ''
  DATABRICKS_HOST: ''
  DATABRICKS_RETRY_TIMEOUT_SECONDS: ''
  MLFLOW_REGISTRY_URI: ''
  REGISTRY_WATCH_SCHEDULE: ''
  REACTOR_REPAIR_SCHEDULE: ''
  REACTOR_MONITOR_SCHEDULE: ''
  MLFLOW_WEBHOOK_SECRET: ''
  DATABRICKS_WEBHOOK_SECRET: ''
}
var optionalAppSettings = union(
  empty(databricksWarehouseId) ? {} : { DATABRICKS_WAREHOUSE_ID: databricksWarehouseId },
  empty(reactorStorage) ? {} : { REACTOR_STORAGE: reactorStorage }
)
// One entry per name; the template's own names come last in the union, so additionalAppSettings cannot
// replace them.
var appSettingNames = union(additionalAppSettings, optionalAppSettings, baseAppSettingNames)

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222: public network access stays on: the registry webhooks (MLflow server, Databricks workspace registry) must reach POST /api/registry/webhook; that route is anonymous but HMAC-signed, the others need a function key
  //checkov:skip=CKV_AZURE_17: client certificates cannot be required: registry webhooks send none
  //checkov:skip=CKV_AZURE_212: Flex Consumption sets instance counts per app in functionAppConfig.scaleAndConcurrency (alwaysReady parameter, default none: the app scales to zero); failover comes from the queues, the state rows' leases and the repair timer, not from a warm standby
  //checkov:skip=CKV_AZURE_78: siteConfig.ftpsState is not set because Flex Consumption does not support it (Microsoft Learn, "App settings reference for Azure Functions", Flex Consumption plan deprecations; ARM error 51021 where enforced; infra/flex_check.py); FTP publishing stays off through the basicPublishingCredentialsPolicies 'ftp' resource below
  //checkov:skip=CKV_AZURE_213: the app defines no health route (its HTTP functions are the signed webhook and the key-protected operators' views), and a per-instance probe every minute would keep a scale-to-zero app running; docs/deploy.md says how to check the host
  name: functionAppName
  location: location
  tags: union(tags, appTags)
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: alwaysReady
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [for s in items(appSettingNames): {
        name: s.key
        value: contains(baseAppSettings, s.key) ? baseAppSettings[s.key] : string(s.value)
      }]
    }
  }
  dependsOn: [
    // The app reads its package, queues and secrets as the identity from its first start.
    deploymentContainer
    queues
    blobOwner
    queueContributor
    tableContributor
    secretsUser
    metricsPublisher
    mlflowSecret
    databricksSecret
  ]
}

// Publishing with a user name and password (FTP, or basic auth on the SCM site) stays off: deployments
// authenticate with Entra ID (az CLI, Azure/functions-action after azure/login).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: logs.id
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------------------

@description('Name of the Function App (for az functionapp commands and the code deployment).')
output functionAppName string = site.name

@description('URL to register as the registry webhook (MLflow 3 or Databricks workspace registry).')
output webhookUrl string = 'https://${site.properties.defaultHostName}/api/registry/webhook'

@description('Base URL of the operators\' views: GET <url>/api/rollouts?code=<function key>, GET <url>/api/records?code=<function key>.')
output appUrl string = 'https://${site.properties.defaultHostName}'

@description('Application (client) id of the user-assigned identity: add it as a Databricks service principal by this id.')
output identityClientId string = identity.properties.clientId

@description('Object (principal) id of the user-assigned identity in Entra ID.')
output identityPrincipalId string = identity.properties.principalId

@description('Resource id of the user-assigned identity.')
output identityResourceId string = identity.id

@description('Storage account of the host, the queues and the state tables.')
output storageAccountName string = storage.name

@description('Key Vault holding the webhook secrets.')
output keyVaultName string = vault.name

@description('Application Insights resource.')
output appInsightsName string = appInsights.name

@description('Resource ID of the operators\' workbook (Azure Monitor → Workbooks).')
output workbookId string = workbook.id

