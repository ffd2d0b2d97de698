// The Teams webhook URL (a secret: it carries its own signature) in Key Vault, read by the Function App
// through a Key Vault reference with the app identity. Created only when the URL is given.
param location string
param tags object
param vaultName string
param appPrincipalId string
@secure()
param teamsWebhookUrl string

// Built-in "Key Vault Secrets User": read secret contents (Learn: Azure built-in roles, Security).
var secretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the Function App (no VNet integration) resolves its Key Vault reference over the public endpoint; access is Entra ID RBAC only (Secrets User for the app identity)
  // checkov:skip=CKV_AZURE_189: same reason: public network access is what a Flex Consumption app without VNet integration reads the vault through
  name: vaultName
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
    softDeleteRetentionInDays: 7
    // A deleted vault or secret stays recoverable for the retention period and cannot be purged early.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: a Teams workflow URL has no expiry of its own; an expiry date here would silently stop every alert card on that date
  parent: vault
  name: 'teams-webhook-url'
  properties: {
    value: teamsWebhookUrl
    contentType: 'text/uri-list'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, appPrincipalId, secretsUserRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The versionless secret URI: the reference follows a rotated secret (within a day, or on restart).
output secretUri string = '${vault.properties.vaultUri}secrets/${secret.name}'
