metadata name = 'Backup storage account'
metadata description = 'The storage account of the pgBackRest repository: one private blob container, reached over HTTPS (TLS 1.2 or later) from the subnet of the nodes only, through its Microsoft.Storage service endpoint. pgBackRest signs its requests with the shared key of the account, which the deployer reads with ListKeys and keeps in the state directory of the stack.'

@description('Required. Name of the storage account: 3-24 lower-case letters and digits, unique in all of Azure.')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region of the storage account (the region of the virtual network: its service endpoint serves it).')
param location string

@description('Required. Tags of every resource: the stack name and its expiry time.')
param tags object

@description('Required. Resource ID of the subnet of the nodes, the only network the account admits; the subnet has a Microsoft.Storage service endpoint.')
param subnetResourceId string

@description('Required. Name of the private blob container holding the repository (stack.yaml backup.container).')
@minLength(3)
@maxLength(63)
param containerName string

@description('Optional. Redundancy of the account: geo-redundant, so the repository outlives a lost zone (GZRS: zone-redundant in its region) or a lost region (both: copied to the paired region); Standard_GRS where the region has no GZRS.')
@allowed([
  'Standard_GZRS'
  'Standard_GRS'
])
param skuName string = 'Standard_GZRS'

@description('Optional. Days a deleted blob or container can still be restored (soft delete): a bad expire or a mistaken delete of the repository is undone within them.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_36: bypass None on purpose: no Azure service, trusted or not, is to reach the repository, only the nodes' subnet
  // checkov:skip=CKV_AZURE_59: a service endpoint reaches the account's public endpoint, so public network access stays on; networkAcls deny every network but the nodes' subnet
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // pgBackRest signs its requests with the account's shared key (repo1-azure-key-type=shared).
    allowSharedKeyAccess: true
    defaultToOAuthAuthentication: false
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'None'
      ipRules: []
      virtualNetworkRules: [
        {
          id: subnetResourceId
          action: 'Allow'
        }
      ]
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
      allowPermanentDelete: false
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

@description('The name of the storage account.')
output name string = account.name

@description('The resource ID of the storage account.')
output resourceId string = account.id

@description('The host name of the blob endpoint of the account (<account>.blob.core.windows.net in the public cloud), as Azure reports it.')
output blobHost string = split(account.properties.primaryEndpoints.blob, '/')[2]
