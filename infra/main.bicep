// Batch Image Autopilot: everything the Function App needs in one subscription.
//
// Shape follows the official Azure Functions Flex Consumption azd templates (FC1 plan, user-assigned
// identity, deployment package in a blob container, identity-based host storage, Entra-only
// Application Insights), kept small. docs/deploy.md explains every parameter and permission.
//
// Two-phase provisioning: Event Grid refuses an AzureFunction event subscription until the function
// exists, so the first `azd up` provisions with deployEventSubscriptions=false, deploys the code, and
// the postdeploy hook (azure.yaml) provisions again with deployEventSubscriptions=true.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name.')
param environmentName string

@minLength(1)
@description('Region of the Function App and its resources (a region with Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group for the app. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@minLength(1)
@description('Comma-separated Batch account resource ids the app manages (AUTOPILOT_BATCH_ACCOUNTS), in this subscription.')
param batchAccounts string

@minLength(1)
@description('Comma-separated names of the resource groups (in this subscription) that hold the snapshots, the managed images and the galleries.')
param imageResourceGroups string

@description('The image-family document as compact JSON (AUTOPILOT_FAMILIES). Leave empty when familiesFile is used.')
param familiesJson string = ''

@description('Path of the image-family document in the deployed package (AUTOPILOT_FAMILIES_FILE), absolute, e.g. /home/site/wwwroot/families.json. Leave empty when familiesJson is used.')
param familiesFile string = ''

@secure()
@description('Teams Workflows webhook URL ("When a Teams webhook request is received") for alert cards (AUTOPILOT_TEAMS_WEBHOOK_URL). Empty: no Teams cards.')
param teamsWebhookUrl string = ''

@secure()
@description('Optional webhook (Logic App / workflow HTTP trigger URL) subscribed to the alert events on the custom topic. Empty: no such subscription.')
param alertWebhookUrl string = ''

@description('NCRONTAB schedule of pool_watch (AUTOPILOT_WATCH_SCHEDULE).')
param watchSchedule string = '0 * * * * *'

@description('NCRONTAB schedule of image_guard_reconcile (AUTOPILOT_GUARD_SCHEDULE).')
param guardSchedule string = '0 */15 * * * *'

@description('NCRONTAB schedule of pipeline_sweep (AUTOPILOT_PIPELINE_SCHEDULE).')
param pipelineSchedule string = '30 */5 * * * *'

@description('Prefix of the app\'s state tables (AUTOPILOT_TABLE_PREFIX).')
param tablePrefix string = 'autopilot'

@description('Overrides of the tuning settings, e.g. {"AUTOPILOT_MAX_RESIZE_ATTEMPTS": "20"}; see modules/functionapp.bicep tuningDefaults.')
param tuning object = {}

@minValue(1)
@maxValue(1000)
@description('Flex Consumption: most instances the app scales out to.')
param maximumInstanceCount int = 40

@allowed([512, 2048, 4096])
@description('Flex Consumption: memory per instance.')
param instanceMemoryMB int = 2048

@description('Name of the subscription\'s Event Grid system topic. Azure allows one system topic per subscription: if one exists, give its name and resource group (it is then updated in place). Empty: evgt-autopilot-<token>.')
param systemTopicName string = ''

@description('Resource group of the system topic. Empty: the app\'s resource group.')
param systemTopicResourceGroup string = ''

@description('Create the Event Grid event subscriptions (needs the functions deployed; set by the postdeploy hook).')
param deployEventSubscriptions bool = false

@description('Grant the roles retention needs (infra/roles.json optInRoles): delete gallery image versions and snapshots on the image resource groups. Set it when a family configures retention.')
param enableRetention bool = false

@description('Grant the role rollout.deleteRetiredPools needs (infra/roles.json optInRoles): delete retired pools and list the jobs that target them on the Batch resource groups.')
param enableRetiredPoolDeletion bool = false

@minValue(1)
@maxValue(30)
@description('Event Grid retry policy: delivery attempts per event (Event Grid default 30).')
param eventMaxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
@description('Event Grid retry policy: event time to live in minutes (Event Grid default 1440 = 24 h).')
param eventTimeToLiveInMinutes int = 1440

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'batch-image-autopilot'
}
var appResourceGroupName = !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
var appIdentityName = 'id-autopilot-${resourceToken}'
// Known before deployment, so role assignment names can be derived from it.
var appIdentityResourceId = '${subscription().id}/resourceGroups/${appResourceGroupName}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${appIdentityName}'

// Written with variable loops rather than map() lambdas, and with no loop inside a function call: the Bicep grammar
// checkov uses (pycep-parser 0.5.1) parses neither, and infra/ must parse under it (tests/infra/test_checkov.py).
var batchAccountEntries = filter(split(batchAccounts, ','), id => !empty(trim(id)))
var batchAccountIds = [for id in batchAccountEntries: trim(id)]
var batchResourceGroupEntries = [for id in batchAccountIds: toLower(split(id, '/')[4])]
var batchResourceGroupNames = union(batchResourceGroupEntries, [])
var imageResourceGroupEntries = filter(split(imageResourceGroups, ','), g => !empty(trim(g)))
var imageResourceGroupLowerNames = [for g in imageResourceGroupEntries: toLower(trim(g))]
var imageResourceGroupNames = union(imageResourceGroupLowerNames, [])
// StringBeginsWith values for the resource-group-scoped event subscriptions (a loop, not map(): checkov's grammar has no lambdas).
var imageResourceGroupPrefixes = [for g in imageResourceGroupNames: '${subscription().id}/resourceGroups/${g}/']

// ---- Event subscriptions: the same table as shared/core/event_routing.py (tests/infra checks it) ----
// operationNames become an advanced filter StringIn on data.operationName, which keeps out the app's
// own lock writes and everything else; subjectContains an advanced filter StringContains on subject.
// Advanced filters are ANDed (at most 25 values per subscription), so the Tags-API writes
// (Microsoft.Resources/tags/write|delete, raised for any resource) get their own subscription with the
// subject filter on it alone: only snapshots' tag writes invoke the function.
var systemTopicSubscriptions = [
  {
    name: 'image-pipeline'
    function: 'image_pipeline'
    includedEventTypes: [
      'Microsoft.Resources.ResourceWriteSuccess'
    ]
    operationNames: [
      'Microsoft.Compute/snapshots/write'
      'Microsoft.Compute/images/write'
      'Microsoft.Compute/galleries/images/versions/write'
    ]
    subjectContains: []
    // StringBeginsWith on subject: only the image resource groups (where the families' snapshots,
    // images and galleries live). 3 operation names + at most 20 groups: Event Grid's 25 filter values.
    resourceGroupScoped: true
  }
  {
    name: 'snapshot-tags'
    function: 'image_pipeline'
    includedEventTypes: [
      'Microsoft.Resources.ResourceWriteSuccess'
      'Microsoft.Resources.ResourceDeleteSuccess'
    ]
    operationNames: [
      'Microsoft.Resources/tags/write'
      'Microsoft.Resources/tags/delete'
      'Microsoft.Compute/snapshots/delete'
    ]
    subjectContains: [
      '/providers/Microsoft.Compute/snapshots/'
    ]
    // 3 operation names + 1 subject value + at most 20 groups: Event Grid's 25 filter values.
    resourceGroupScoped: true
  }
  {
    name: 'image-guard'
    function: 'image_guard_events'
    includedEventTypes: [
      'Microsoft.Resources.ResourceDeleteSuccess'
      'Microsoft.Resources.ResourceDeleteFailure'
      'Microsoft.Resources.ResourceWriteSuccess'
    ]
    resourceGroupScoped: false
    operationNames: [
      'Microsoft.Compute/images/delete'
      'Microsoft.Compute/snapshots/delete'
      'Microsoft.Compute/galleries/images/versions/delete'
      'Microsoft.Authorization/locks/delete'
      'Microsoft.Batch/batchAccounts/pools/write'
      'Microsoft.Batch/batchAccounts/pools/delete'
    ]
    subjectContains: []
  }
]

var customTopicSubscriptions = [
  {
    name: 'pool-resize-stalled'
    function: 'resize_stalled'
    includedEventTypes: [
      'BatchImageAutopilot.PoolResizeStalled'
    ]
    operationNames: []
    subjectContains: []
    resourceGroupScoped: false
  }
]

// The alert event types (shared/core/alerts.py) the optional alertWebhookUrl subscription receives.
var alertEventTypes = [
  'BatchImageAutopilot.AllocationFailed'
  'BatchImageAutopilot.QuotaReached'
  'BatchImageAutopilot.ImageMissing'
  'BatchImageAutopilot.ResizeGaveUp'
  'BatchImageAutopilot.PoolRecovered'
  'BatchImageAutopilot.NodeLimitReached'
  'BatchImageAutopilot.PoolNeedsAttention'
  'BatchImageAutopilot.SnapshotSetIncomplete'
  'BatchImageAutopilot.ImageRefused'
  'BatchImageAutopilot.ImageBuildFailed'
  'BatchImageAutopilot.PoolsCreated'
  'BatchImageAutopilot.DeleteBlocked'
  'BatchImageAutopilot.SnapshotSetChanged'
  'BatchImageAutopilot.PermissionDenied'
  'BatchImageAutopilot.NodesUnhealthy'
  'BatchImageAutopilot.ImageUnhealthy'
  'BatchImageAutopilot.RolloutStarted'
  'BatchImageAutopilot.RolloutCompleted'
  'BatchImageAutopilot.RolloutBlocked'
  'BatchImageAutopilot.RolloutRolledBack'
  'BatchImageAutopilot.VersionDeleted'
]

// The app's state tables (shared/core/state.py); the app also creates them on first use.
var stateTables = [
  'Episodes'
  'Alerts'
  'SnapshotSets'
  'Pipeline'
  'Watch'
]

var retryPolicy = {
  maxDeliveryAttempts: eventMaxDeliveryAttempts
  eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: appResourceGroupName
  location: location
  tags: tags
}

module identities 'modules/identities.bicep' = {
  name: 'autopilot-identities'
  scope: rg
  params: {
    location: location
    tags: tags
    appIdentityName: appIdentityName
    deliveryIdentityName: 'id-autopilot-events-${resourceToken}'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'autopilot-monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-autopilot-${resourceToken}'
    applicationInsightsName: 'appi-autopilot-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'autopilot-storage'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: 'stautopilot${resourceToken}'
    deploymentContainerName: 'app-package'
    deadLetterContainerName: 'eventgrid-deadletter'
    tableNames: [for t in stateTables: '${tablePrefix}${t}']
  }
}

module customTopic 'modules/custom-topic.bicep' = {
  name: 'autopilot-custom-topic'
  scope: rg
  params: {
    location: location
    tags: tags
    topicName: 'evgt-autopilot-events-${resourceToken}'
    deliveryIdentityId: identities.outputs.deliveryIdentityId
  }
}

// The Teams URL is a secret: when given, it goes to Key Vault and the app setting is a Key Vault reference.
module teamsSecret 'modules/keyvault.bicep' = if (!empty(teamsWebhookUrl)) {
  name: 'autopilot-keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    vaultName: 'kv-ap-${resourceToken}'
    appPrincipalId: identities.outputs.appIdentityPrincipalId
    teamsWebhookUrl: teamsWebhookUrl
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'autopilot-functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    planName: 'asp-autopilot-${resourceToken}'
    functionAppName: 'func-autopilot-${resourceToken}'
    identityId: identities.outputs.appIdentityId
    identityClientId: identities.outputs.appIdentityClientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    batchAccounts: join(batchAccountIds, ',')
    familiesJson: familiesJson
    familiesFile: familiesFile
    eventsTopicEndpoint: customTopic.outputs.endpoint
    teamsWebhookUrl: empty(teamsWebhookUrl) ? '' : '@Microsoft.KeyVault(SecretUri=${teamsSecret.outputs.secretUri})'
    watchSchedule: watchSchedule
    guardSchedule: guardSchedule
    pipelineSchedule: pipelineSchedule
    tablePrefix: tablePrefix
    tuning: tuning
  }
}

module appRbac 'modules/app-rbac.bicep' = {
  name: 'autopilot-app-rbac'
  scope: rg
  params: {
    appPrincipalId: identities.outputs.appIdentityPrincipalId
    deliveryPrincipalId: identities.outputs.deliveryIdentityPrincipalId
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    customTopicName: customTopic.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module customTopicSubscriptionsDeployment 'modules/custom-topic-subscriptions.bicep' = if (deployEventSubscriptions) {
  name: 'autopilot-custom-topic-subscriptions'
  scope: rg
  params: {
    topicName: customTopic.outputs.name
    functionAppId: functionApp.outputs.id
    subscriptions: customTopicSubscriptions
    alertWebhookUrl: alertWebhookUrl
    alertEventTypes: alertEventTypes
    retryPolicy: retryPolicy
    deliveryIdentityId: identities.outputs.deliveryIdentityId
    deadLetterStorageId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
  dependsOn: [
    appRbac
  ]
}

module systemTopic 'modules/system-topic.bicep' = {
  name: 'autopilot-system-topic'
  scope: resourceGroup(!empty(systemTopicResourceGroup) ? systemTopicResourceGroup : appResourceGroupName)
  params: {
    tags: tags
    topicName: !empty(systemTopicName) ? systemTopicName : 'evgt-autopilot-arm-${resourceToken}'
    deliveryIdentityId: identities.outputs.deliveryIdentityId
    deployEventSubscriptions: deployEventSubscriptions
    functionAppId: functionApp.outputs.id
    subscriptions: systemTopicSubscriptions
    subjectPrefixes: imageResourceGroupPrefixes
    retryPolicy: retryPolicy
    deadLetterStorageId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
  dependsOn: [
    rg
    appRbac
  ]
}

// ---- Custom roles (infra/roles.json): least privilege outside the app's resource group ----
var customRoles = loadJsonContent('roles.json').roles
var customRoleScopes = [for role in customRoles: role.scope]
var imageResourceGroupIds = [for g in imageResourceGroupNames: '${subscription().id}/resourceGroups/${g}']
var batchResourceGroupIds = [for g in batchResourceGroupNames: '${subscription().id}/resourceGroups/${g}']

resource customRoleDefinitions 'Microsoft.Authorization/roleDefinitions@2022-04-01' = [for role in customRoles: {
  name: guid(subscription().id, environmentName, role.name)
  properties: {
    // Role names are unique per tenant: the environment and subscription keep deployments apart.
    roleName: '${role.name} (${environmentName}, ${take(subscription().subscriptionId, 8)})'
    description: role.description
    type: 'CustomRole'
    assignableScopes: role.scope == 'subscription' ? [subscription().id] : (role.scope == 'imageResourceGroups' ? imageResourceGroupIds : batchResourceGroupIds)
    permissions: [
      {
        actions: role.actions
        notActions: []
        dataActions: role.dataActions
        notDataActions: []
      }
    ]
  }
}]

module imageRoleAssignments 'modules/role-assignment.bicep' = [for g in imageResourceGroupNames: {
  name: 'autopilot-images-role-${uniqueString(environmentName, g)}'
  scope: resourceGroup(g)
  params: {
    principalId: identities.outputs.appIdentityPrincipalId
    roleDefinitionId: customRoleDefinitions[indexOf(customRoleScopes, 'imageResourceGroups')].id
    roleDescription: 'Batch Image Autopilot (${environmentName}): images, gallery versions and their locks'
  }
}]

module batchRoleAssignments 'modules/role-assignment.bicep' = [for g in batchResourceGroupNames: {
  name: 'autopilot-batch-role-${uniqueString(environmentName, g)}'
  scope: resourceGroup(g)
  params: {
    principalId: identities.outputs.appIdentityPrincipalId
    roleDefinitionId: customRoleDefinitions[indexOf(customRoleScopes, 'batchResourceGroups')].id
    roleDescription: 'Batch Image Autopilot (${environmentName}): Batch accounts and pools'
  }
}]

// Destructive grants, only when the deployment opts in (no filtered loops or lambdas: checkov's Bicep parser reads this file).
var optInRoles = loadJsonContent('roles.json').optInRoles
var optInRoleParameters = [for role in optInRoles: role.parameter]
var retentionRole = optInRoles[indexOf(optInRoleParameters, 'enableRetention')]
var retirementRole = optInRoles[indexOf(optInRoleParameters, 'enableRetiredPoolDeletion')]
var retentionGroupNames = enableRetention ? imageResourceGroupNames : []
var retirementGroupNames = enableRetiredPoolDeletion ? batchResourceGroupNames : []

resource retentionRoleDefinition 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableRetention) {
  name: guid(subscription().id, environmentName, retentionRole.name)
  properties: {
    roleName: '${retentionRole.name} (${environmentName}, ${take(subscription().subscriptionId, 8)})'
    description: retentionRole.description
    type: 'CustomRole'
    assignableScopes: imageResourceGroupIds
    permissions: [
      {
        actions: retentionRole.actions
        notActions: []
        dataActions: retentionRole.dataActions
        notDataActions: []
      }
    ]
  }
}

resource retirementRoleDefinition 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableRetiredPoolDeletion) {
  name: guid(subscription().id, environmentName, retirementRole.name)
  properties: {
    roleName: '${retirementRole.name} (${environmentName}, ${take(subscription().subscriptionId, 8)})'
    description: retirementRole.description
    type: 'CustomRole'
    assignableScopes: batchResourceGroupIds
    permissions: [
      {
        actions: retirementRole.actions
        notActions: []
        dataActions: retirementRole.dataActions
        notDataActions: []
      }
    ]
  }
}

module retentionRoleAssignments 'modules/role-assignment.bicep' = [for g in retentionGroupNames: {
  name: 'autopilot-retention-role-${uniqueString(environmentName, g)}'
  scope: resourceGroup(g)
  params: {
    principalId: identities.outputs.appIdentityPrincipalId
    roleDefinitionId: retentionRoleDefinition.id
    roleDescription: 'Batch Image Autopilot (${environmentName}): retention deletes unused gallery image versions and snapshots'
  }
}]

module retirementRoleAssignments 'modules/role-assignment.bicep' = [for g in retirementGroupNames: {
  name: 'autopilot-retirement-role-${uniqueString(environmentName, g)}'
  scope: resourceGroup(g)
  params: {
    principalId: identities.outputs.appIdentityPrincipalId
    roleDefinitionId: retirementRoleDefinition.id
    roleDescription: 'Batch Image Autopilot (${environmentName}): delete retired, empty pools no job targets'
  }
}]

resource subscriptionRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, appIdentityResourceId, 'subscription')
  properties: {
    principalId: identities.outputs.appIdentityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: customRoleDefinitions[indexOf(customRoleScopes, 'subscription')].id
    description: 'Batch Image Autopilot (${environmentName}): subscription-wide lock reads'
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AUTOPILOT_APP_IDENTITY_CLIENT_ID string = identities.outputs.appIdentityClientId
output AUTOPILOT_APP_IDENTITY_PRINCIPAL_ID string = identities.outputs.appIdentityPrincipalId
output AUTOPILOT_EVENTS_TOPIC_ENDPOINT string = customTopic.outputs.endpoint
output AUTOPILOT_SYSTEM_TOPIC_ID string = systemTopic.outputs.id
