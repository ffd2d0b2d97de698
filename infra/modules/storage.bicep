// The app's storage account: Functions host storage, the Flex Consumption deployment package, the
// app's state tables and the Event Grid dead-letter container. Shared keys are off: every client
// (host, app, deployment, Event Grid) authenticates with Entra ID.
param location string
param tags object
param storageAccountName string
param deploymentContainerName string
param deadLetterContainerName string
param tableNames array

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the Function App has no VNet integration and reaches its host storage over the public endpoint; shared keys are off, every client uses Entra ID
  // checkov:skip=CKV_AZURE_59: as CKV_AZURE_35: public network access is needed without VNet integration; blob public access is off (allowBlobPublicAccess: false)
  // checkov:skip=CKV_AZURE_206: LRS on purpose: the tables hold state the app rebuilds from Azure, and a deployed account cannot be switched to ZRS by a redeploy
  // checkov:skip=CKV_AZURE_43: the name is a parameter; main.bicep derives it as 'stautopilot' + uniqueString (lower-case letters and digits, 24 characters)
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
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
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for t in tableNames: {
  parent: tableService
  name: t
}]

output id string = storage.id
output name string = storage.name
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
