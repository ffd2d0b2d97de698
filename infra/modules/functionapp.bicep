// The Function App on Flex Consumption (FC1, Linux, Python 3.11) with the app's user-assigned identity,
// its deployment package in a blob container reached with that identity, and every app setting the
// code reads (shared/config/settings.py; tests/infra checks this file against local.settings.sample.json).
param location string
param tags object
param planName string
param functionAppName string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param maximumInstanceCount int
param instanceMemoryMB int

param batchAccounts string
param familiesJson string
param familiesFile string
param eventsTopicEndpoint string
@secure()
param teamsWebhookUrl string
param watchSchedule string
param guardSchedule string
param pipelineSchedule string
param tablePrefix string
param tuning object

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a timer- and event-driven app that catches up after an outage (Event Grid retries for 24 h, the watch rescans); zone redundancy is not worth always-ready instances here
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to the functions over the public endpoint (it cannot deliver to an Azure Function behind a private endpoint); every call needs the Functions system key
  // checkov:skip=CKV_AZURE_17: Event Grid cannot present a client certificate to an Azure Function destination, and the app serves no other HTTP
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero on events and timers; a missed delivery is retried by Event Grid, a missed tick caught up by the next
  // checkov:skip=CKV_AZURE_213: no HTTP endpoint to probe (the app has only Event Grid and timer triggers), and Flex Consumption has no App Service health check
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'autopilot' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// The app's own defaults (shared/config/settings.py); the `tuning` parameter overrides any of them.
var tuningDefaults = {
  AUTOPILOT_HTTP_RETRY_TOTAL: '4'
  AUTOPILOT_HTTP_RETRY_BACKOFF_SECONDS: '0.8'
  AUTOPILOT_HTTP_RETRY_BACKOFF_MAX_SECONDS: '60'
  AUTOPILOT_HTTP_RETRY_AFTER_MAX_SECONDS: '60'
  AUTOPILOT_STATE_RETENTION_DAYS: '30'
  AUTOPILOT_ALLOW_CROSS_SUBSCRIPTION_GALLERY: 'false'
  AUTOPILOT_HTTP_READ_TIMEOUT_SECONDS: '60'
  AUTOPILOT_BACKOFF_INITIAL_MINUTES: '5'
  AUTOPILOT_BACKOFF_MAX_MINUTES: '30'
  AUTOPILOT_BACKOFF_RESET_HOURS: '3'
  AUTOPILOT_MAX_RESIZE_ATTEMPTS: '12'
  AUTOPILOT_MAX_EPISODE_HOURS: '24'
  AUTOPILOT_GROWTH_STEP_NODES: '300'
  AUTOPILOT_WATCH_FULL_SCAN_MINUTES: '5'
  AUTOPILOT_ALERT_COOLDOWN_MINUTES: '60'
  AUTOPILOT_SET_ASSEMBLY_TIMEOUT_MINUTES: '60'
  AUTOPILOT_UNHEALTHY_NODE_MINUTES: '15'
  AUTOPILOT_MAX_NODE_REPLACEMENTS: '10'
  AUTOPILOT_NODE_READY_MINUTES: '30'
  AUTOPILOT_IMAGE_UNHEALTHY_SHARE: '0.5'
  AUTOPILOT_NODE_HEALTH_ROTATION_MINUTES: '60'
}

// Set by the deployment; `tuning` cannot override these.
// Not set on purpose (tests/infra/test_settings_consistency.py INFRA_EXCEPTIONS): AzureWebJobsStorage
// (a connection string; identity-based __ settings instead), AUTOPILOT_CREDENTIAL, AUTOPILOT_CA_BUNDLE
// and AUTOPILOT_ARM_ENDPOINT (emulator / sovereign clouds), AUTOPILOT_EVENTS_TOPIC_KEY (the topic
// accepts Entra ID only). FUNCTIONS_WORKER_RUNTIME is not allowed on Flex Consumption (runtime above).
var deploymentSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AUTOPILOT_SUBSCRIPTION_ID: subscription().subscriptionId
  AUTOPILOT_BATCH_ACCOUNTS: batchAccounts
  AUTOPILOT_FAMILIES: familiesJson
  AUTOPILOT_FAMILIES_FILE: familiesFile
  AUTOPILOT_EVENTS_TOPIC_ENDPOINT: eventsTopicEndpoint
  AUTOPILOT_TEAMS_WEBHOOK_URL: teamsWebhookUrl
  AUTOPILOT_WATCH_SCHEDULE: watchSchedule
  AUTOPILOT_GUARD_SCHEDULE: guardSchedule
  AUTOPILOT_PIPELINE_SCHEDULE: pipelineSchedule
  AUTOPILOT_TABLE_PREFIX: tablePrefix
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: see functionApp: Event Grid needs the public endpoint
  // checkov:skip=CKV_AZURE_13: App Service Authentication would refuse Event Grid's deliveries (they carry the Functions system key); the app has no user-facing HTTP
  // checkov:skip=CKV_AZURE_63: App Service HTTP logs do not exist on Linux Flex Consumption; the host logs to Application Insights
  // checkov:skip=CKV_AZURE_65: App Service detailed error pages do not exist on Linux Flex Consumption; the host logs to Application Insights
  // checkov:skip=CKV_AZURE_66: App Service failed request tracing does not exist on Linux Flex Consumption; the host logs to Application Insights
  // checkov:skip=CKV_AZURE_80: a Python app: no .NET Framework version applies
  // checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container; there is no Azure Files content share
  parent: functionApp
  name: 'appsettings'
  properties: union(tuningDefaults, tuning, deploymentSettings)
}

output id string = functionApp.id
output name string = functionApp.name
