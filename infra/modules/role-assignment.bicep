// One role assignment at resource-group scope (the custom roles on image and Batch resource groups).
param principalId string
param roleDefinitionId string
param roleDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
    description: roleDescription
  }
}
