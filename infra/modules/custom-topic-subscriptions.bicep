// Event subscriptions on the app's custom topic: each entry of `subscriptions` (main.bicep
// customTopicSubscriptions) to its function, plus the optional alert webhook (a Logic App / workflow).
param topicName string
param functionAppId string
@description('[{name, function, includedEventTypes, operationNames, subjectContains}] as in shared/core/event_routing.py (subjectContains is empty on this topic)')
param subscriptions array
@secure()
param alertWebhookUrl string
param alertEventTypes array
param retryPolicy object
param deliveryIdentityId string
param deadLetterStorageId string
param deadLetterContainerName string

var deadLetter = {
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

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

resource functionSubscriptions 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = [for s in subscriptions: {
  parent: topic
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
      advancedFilters: empty(s.operationNames) ? [] : [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: s.operationNames
        }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}]

// Placeholder for people-facing alerting beyond Teams cards: set alertWebhookUrl to a Logic App or
// Power Automate "When an HTTP request is received" URL and it gets every alert event (Event Grid
// schema). Logic Apps endpoints need no Event Grid validation handshake; any other webhook must answer it.
resource alertWebhook 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = if (!empty(alertWebhookUrl)) {
  parent: topic
  name: 'alerts-webhook'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: alertWebhookUrl
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: alertEventTypes
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}
