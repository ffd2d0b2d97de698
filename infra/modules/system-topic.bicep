// The subscription's Azure Resource Manager system topic (Microsoft.Resources.Subscriptions, location
// global) and its event subscriptions to the app's functions. Azure allows one system topic per
// subscription: pointing topicName at an existing one updates it in place (its identity becomes
// the delivery identity).
param tags object
param topicName string
param deliveryIdentityId string
param deployEventSubscriptions bool
param functionAppId string
@description('[{name, function, includedEventTypes, operationNames}] as in shared/event_routing.py')
param subscriptions array
@description('StringBeginsWith values on subject for subscriptions with resourceGroupScoped (one per image resource group)')
@maxLength(22) // Event Grid: 25 filter values per subscription, 3 of them are operation names
param subjectPrefixes array
param retryPolicy object
param deadLetterStorageId string
param deadLetterContainerName string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: topicName
  location: 'global'
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${deliveryIdentityId}': {}
    }
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource functionSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [for s in subscriptions: if (deployEventSubscriptions) {
  parent: systemTopic
  name: s.name
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${s.function}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: s.includedEventTypes
      // StringIn on data.operationName: only the operations the function acts on (never tag writes,
      // Microsoft.Resources/tags/write, nor the app's own lock writes). Case-insensitive in Event Grid.
      advancedFilters: concat(empty(s.operationNames) ? [] : [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: s.operationNames
        }
      ], s.resourceGroupScoped ? [
        {
          operatorType: 'StringBeginsWith'
          key: 'subject'
          values: subjectPrefixes
        }
      ] : [])
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: deliveryIdentityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}]

output id string = systemTopic.id
output name string = systemTopic.name
