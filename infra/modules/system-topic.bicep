// The subscription's Azure Resource Manager system topic (Microsoft.Resources.Subscriptions, location
// global) and its event subscriptions to the app's functions. Azure allows one system topic per
// subscription: pointing topicName at an existing one updates it in place (its identity becomes
// the delivery identity).
param tags object
param topicName string
param deliveryIdentityId string
param deployEventSubscriptions bool
param functionAppId string
@description('[{name, function, includedEventTypes, operationNames, subjectContains, resourceGroupScoped}] as in shared/core/event_routing.py')
param subscriptions array
@description('StringBeginsWith values on subject for subscriptions with resourceGroupScoped (one per image resource group)')
@maxLength(20) // shared/config/families.py MAX_WATCHED_GROUPS: with 3 operation names and 1 subject value, within Event Grid's 25
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

// A conditional collection rather than a filtered loop (`[for s in subscriptions: if (...) {`): the same resources, in a
// form every Bicep grammar the tests use parses (pycep-parser 0.7.1 cannot parse a filtered loop).
resource functionSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [for s in (deployEventSubscriptions ? subscriptions : []): {
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
      // StringIn on data.operationName: only the operations the function acts on (never the app's own
      // lock writes). StringContains on subject: Tags-API writes of snapshots only (tags/write is raised
      // for every resource). StringBeginsWith on subject: only the configured image resource groups.
      // Advanced filters are ANDed; string comparisons are case-insensitive.
      advancedFilters: concat(empty(s.operationNames) ? [] : [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: s.operationNames
        }
      ], empty(s.subjectContains) ? [] : [
        {
          operatorType: 'StringContains'
          key: 'subject'
          values: s.subjectContains
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
