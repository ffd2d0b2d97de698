// Built-in role assignments on the app's own resources, read from infra/roles.json (builtInRoles) so
// that the least-privilege test sees exactly what is granted. Each role goes to one scope.
param appPrincipalId string
param deliveryPrincipalId string
param storageAccountName string
param deadLetterContainerName string
param customTopicName string
param applicationInsightsName string

var builtInRoles = loadJsonContent('../roles.json').builtInRoles
var storageRoles = filter(builtInRoles, r => r.scope == 'appStorage')
var topicRoles = filter(builtInRoles, r => r.scope == 'customTopic')
var insightsRoles = filter(builtInRoles, r => r.scope == 'appInsights')
var deadLetterRoles = filter(builtInRoles, r => r.scope == 'deadLetterContainer')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource deadLetterContainer 'containers' existing = {
      name: deadLetterContainerName
    }
  }
}

resource customTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: customTopicName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Storage Blob Data Owner, Storage Queue Data Contributor, Storage Table Data Contributor
resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in storageRoles: {
  name: guid(storage.id, appPrincipalId, r.roleDefinitionId)
  scope: storage
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', r.roleDefinitionId)
    description: r.why
  }
}]

// EventGrid Data Sender
resource topicAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in topicRoles: {
  name: guid(customTopic.id, appPrincipalId, r.roleDefinitionId)
  scope: customTopic
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', r.roleDefinitionId)
    description: r.why
  }
}]

// Monitoring Metrics Publisher
resource insightsAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in insightsRoles: {
  name: guid(applicationInsights.id, appPrincipalId, r.roleDefinitionId)
  scope: applicationInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', r.roleDefinitionId)
    description: r.why
  }
}]

// Storage Blob Data Contributor for Event Grid's delivery identity, on the dead-letter container only
resource deadLetterAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for r in deadLetterRoles: {
  name: guid(storage::blobService::deadLetterContainer.id, deliveryPrincipalId, r.roleDefinitionId)
  scope: storage::blobService::deadLetterContainer
  properties: {
    principalId: deliveryPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', r.roleDefinitionId)
    description: r.why
  }
}]
