// Two user-assigned identities: the app's (every Azure call the code makes, host storage, telemetry)
// and Event Grid's (dead-lettering only), so neither holds the other's permissions.
param location string
param tags object
param appIdentityName string
param deliveryIdentityName string

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

resource deliveryIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: deliveryIdentityName
  location: location
  tags: tags
}

output appIdentityId string = appIdentity.id
output appIdentityClientId string = appIdentity.properties.clientId
output appIdentityPrincipalId string = appIdentity.properties.principalId
output deliveryIdentityId string = deliveryIdentity.id
output deliveryIdentityPrincipalId string = deliveryIdentity.properties.principalId
