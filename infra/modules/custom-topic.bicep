// The app's own Event Grid custom topic: PoolResizeStalled and alert events. Local auth (access keys,
// SAS) is disabled, so publishing needs Entra ID and the EventGrid Data Sender role.
param location string
param tags object
param topicName string
@description('Identity Event Grid uses to write dead-lettered events.')
param deliveryIdentityId string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193: the Function App (no VNet integration) publishes over the public endpoint; only Entra ID callers with EventGrid Data Sender can (local auth is off)
  name: topicName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${deliveryIdentityId}': {}
    }
  }
  properties: {
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output name string = topic.name
output id string = topic.id
output endpoint string = topic.properties.endpoint
