metadata name = 'Network security group'
metadata description = 'The subnet NSG. Its rules come from the stack spec (deployer/targets/azure/parameters.py), never from this file.'

@description('Required. Name of the network security group.')
param name string

@description('Required. Azure region of the network security group.')
param location string

@description('Required. Tags of every resource: the stack name and its expiry time.')
param tags object

@description('Required. Security rules in the ARM shape ({name, properties}), rendered from stack.yaml security_rules by parameters.py.')
param securityRules array

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // A deny rule injected for a partition drill must also cut established flows.
    flushConnection: true
    securityRules: securityRules
  }
}

@description('The name of the network security group.')
output name string = nsg.name

@description('The resource ID of the network security group.')
output resourceId string = nsg.id
