metadata name = 'Virtual network'
metadata description = 'The VNet with its one subnet (NSG attached, no default outbound access) and a NAT gateway for egress.'

@description('Required. Name of the virtual network.')
param name string

@description('Required. Azure region of the network resources.')
param location string

@description('Required. Tags of every resource: the stack name and its expiry time.')
param tags object

@description('Required. Address space of the virtual network (stack.yaml network.vnet_cidr).')
param addressPrefix string

@description('Required. Name of the subnet of the nodes.')
param subnetName string

@description('Required. Address prefix of the subnet (stack.yaml network.subnet_cidr).')
param subnetAddressPrefix string

@description('Required. Resource ID of the network security group attached to the subnet.')
param networkSecurityGroupResourceId string

@description('Required. Name of the NAT gateway that gives the nodes egress (package mirrors).')
param natGatewayName string

@description('Required. Name of the public IP address of the NAT gateway.')
param natPublicIpName string

@description('Optional. Idle timeout of outbound flows through the NAT gateway, in minutes.')
@minValue(4)
@maxValue(120)
param natIdleTimeoutInMinutes int = 4

// New subnets have no default outbound access: without this gateway the nodes reach no mirror.
module natPublicIp 'publicIp.bicep' = {
  name: '${deployment().name}-natpip'
  params: {
    name: natPublicIpName
    location: location
    tags: tags
  }
}

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = {
  name: natGatewayName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: natIdleTimeoutInMinutes
    publicIpAddresses: [
      {
        id: natPublicIp.outputs.resourceId
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    // The subnet is declared inline so that a redeploy never deletes it.
    subnets: [
      {
        name: subnetName
        properties: {
          addressPrefix: subnetAddressPrefix
          defaultOutboundAccess: false
          // Azure's defaults, set so what-if after a deployment shows no change.
          privateEndpointNetworkPolicies: 'Disabled'
          privateLinkServiceNetworkPolicies: 'Enabled'
          // The backup repository's storage account admits this subnet (its network rules name it);
          // Azure gives the endpoint the region and its paired region.
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
          ]
          networkSecurityGroup: {
            id: networkSecurityGroupResourceId
          }
          natGateway: {
            id: natGateway.id
          }
        }
      }
    ]
  }
}

@description('The name of the virtual network.')
output name string = vnet.name

@description('The resource ID of the virtual network.')
output resourceId string = vnet.id

@description('The name of the subnet of the nodes.')
output subnetName string = subnetName

@description('The resource ID of the subnet of the nodes.')
output subnetResourceId string = az.resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, subnetName)

@description('The name of the NAT gateway.')
output natGatewayName string = natGateway.name

@description('The resource ID of the NAT gateway.')
output natGatewayResourceId string = natGateway.id
