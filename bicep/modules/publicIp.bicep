metadata name = 'Public IP address'
metadata description = 'A Standard, static IPv4 public IP address (load balancer frontend or NAT gateway egress), with a DNS name when given a label.'

@description('Required. Name of the public IP address.')
param name string

@description('Required. Azure region of the public IP address.')
param location string

@description('Required. Tags of every resource: the stack name and its expiry time.')
param tags object

@description('Optional. Availability zones of the address; empty for a no-zone (regional) address.')
param zones array = []

@description('Optional. Idle timeout of TCP flows, in minutes.')
@minValue(4)
@maxValue(30)
param idleTimeoutInMinutes int = 4

@description('Optional. DNS label of the address: its name is then <label>.<region>.cloudapp.azure.com; empty for no DNS name.')
@maxLength(63)
param domainNameLabel string = ''

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: name
  location: location
  tags: tags
  zones: zones
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
    idleTimeoutInMinutes: idleTimeoutInMinutes
    dnsSettings: empty(domainNameLabel) ? null : { domainNameLabel: domainNameLabel }
  }
}

@description('The name of the public IP address.')
output name string = publicIp.name

@description('The resource ID of the public IP address.')
output resourceId string = publicIp.id

@description('The allocated public IP address.')
output ipAddress string = publicIp.properties.ipAddress

@description('The DNS name of the address (<label>.<region>.cloudapp.azure.com) as Azure assigned it; empty without a label.')
output fqdn string = empty(domainNameLabel) ? '' : publicIp.properties.dnsSettings.fqdn
