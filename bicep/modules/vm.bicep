metadata name = 'Node'
metadata description = 'One cluster node: a Debian 12 VM in one availability zone and its NIC with a static private address and no public IP.'

@description('Required. Name of the virtual machine.')
param name string

@description('Required. Host name inside the VM (the node name of stack.yaml).')
param computerName string

@description('Required. Name of the network interface.')
param nicName string

@description('Required. Azure region of the VM and its NIC.')
param location string

@description('Required. Tags of every resource: the stack name and its expiry time.')
param tags object

@description('Required. Availability zone of the VM (stack.yaml nodes[].zone).')
param zone string

@description('Required. Resource ID of the subnet of the nodes.')
param subnetResourceId string

@description('Required. Static private IPv4 address of the NIC (stack.yaml nodes[].address).')
param privateIp string

@description('Required. Size of the VM (stack.yaml azure.vm_size).')
param vmSize string

@description('Required. Name of the admin user that Ansible logs in as (stack.yaml admin_user).')
param adminUsername string

@description('Required. OpenSSH public key of the admin user; the only way in (passwords are disabled).')
@secure()
param sshPublicKey string

@description('Optional. Marketplace image of the VM.')
param imageReference object = {
  publisher: 'Debian'
  offer: 'debian-12'
  sku: '12-gen2'
  version: 'latest'
}

@description('Optional. Storage type of the OS disk.')
@allowed([
  'Standard_LRS'
  'StandardSSD_LRS'
  'Premium_LRS'
])
param osDiskType string = 'StandardSSD_LRS'

@description('Optional. Size of the OS disk in GiB: the image\'s own size unless larger (set, so what-if after a deployment shows no change).')
@minValue(30)
param osDiskSizeGB int = 30

@description('Required. Whether the NIC joins the load balancer backend pool: false in stage 1 (provision), true in stage 3 (attach).')
param joinBackendPool bool

@description('Required. Resource ID of the load balancer backend pool the NIC joins when joinBackendPool is true.')
param backendPoolResourceId string

@description('Required. Resource ID of the SSH inbound NAT rule of this node.')
param inboundNatRuleResourceId string

var osDiskName = '${name}-osdisk'

resource nic 'Microsoft.Network/networkInterfaces@2024-05-01' = {
  name: nicName
  location: location
  tags: tags
  properties: {
    enableIPForwarding: false
    enableAcceleratedNetworking: false
    ipConfigurations: [
      {
        name: 'ipconfig1'
        properties: {
          primary: true
          privateIPAddressVersion: 'IPv4'
          privateIPAllocationMethod: 'Static'
          privateIPAddress: privateIp
          subnet: {
            id: subnetResourceId
          }
          loadBalancerInboundNatRules: [
            {
              id: inboundNatRuleResourceId
            }
          ]
          loadBalancerBackendAddressPools: joinBackendPool ? [{ id: backendPoolResourceId }] : []
        }
      }
    ]
  }
}

resource vm 'Microsoft.Compute/virtualMachines@2024-07-01' = {
  name: name
  location: location
  tags: tags
  zones: [
    zone
  ]
  properties: {
    hardwareProfile: {
      vmSize: vmSize
    }
    storageProfile: {
      imageReference: imageReference
      osDisk: {
        name: osDiskName
        createOption: 'FromImage'
        caching: 'ReadWrite'
        deleteOption: 'Delete'
        diskSizeGB: osDiskSizeGB
        managedDisk: {
          storageAccountType: osDiskType
        }
      }
    }
    osProfile: {
      computerName: computerName
      adminUsername: adminUsername
      // Everything on a node goes through SSH (Ansible, process faults): no VM extensions.
      allowExtensionOperations: false
      // What Azure sets on a Linux VM anyway (true or omitted are the only values).
      requireGuestProvisionSignal: true
      linuxConfiguration: {
        disablePasswordAuthentication: true
        provisionVMAgent: true
        ssh: {
          publicKeys: [
            {
              path: '/home/${adminUsername}/.ssh/authorized_keys'
              keyData: sshPublicKey
            }
          ]
        }
      }
    }
    securityProfile: {
      // Encrypts the temp disk and disk caches too. Needs the subscription feature
      // Microsoft.Compute/EncryptionAtHost registered once (see docs/azure.md).
      encryptionAtHost: true
    }
    networkProfile: {
      networkInterfaces: [
        {
          id: nic.id
          properties: {
            primary: true
            deleteOption: 'Delete'
          }
        }
      ]
    }
    diagnosticsProfile: {
      bootDiagnostics: {
        enabled: true
      }
    }
  }
}

// The OS disk the VM creates from the image does not inherit the VM's tags: tag it, so that the
// sweep by tag (teardown, expiry) sees it too.
resource osDisk 'Microsoft.Compute/disks@2024-03-02' existing = {
  name: osDiskName
}

resource osDiskTags 'Microsoft.Resources/tags@2022-09-01' = {
  name: 'default'
  scope: osDisk
  properties: {
    tags: tags
  }
  dependsOn: [
    vm
  ]
}

@description('The name of the virtual machine.')
output name string = vm.name

@description('The resource ID of the virtual machine.')
output resourceId string = vm.id

@description('The name of the network interface.')
output nicName string = nic.name

@description('The resource ID of the network interface.')
output nicResourceId string = nic.id

@description('The static private IPv4 address of the node.')
output privateIp string = privateIp
