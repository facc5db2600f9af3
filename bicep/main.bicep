metadata name = 'pgha stack'
metadata description = 'A 3-node HA PostgreSQL stack (Patroni, etcd, HAProxy on every node) behind a Standard load balancer, with a storage account for its backups (pgBackRest). Every value comes from stack.yaml through deployer/targets/azure/parameters.py.'

// ---------- parameters (all given by the deployer) ----------

@description('Required. Name of the stack (stack.yaml name); prefix of every resource name.')
@minLength(1)
@maxLength(15)
param stackName string

@description('Optional. Azure region of every resource.')
param location string = resourceGroup().location

@description('Required. Tags of every resource: the stack name and its expiry time, given by the deployer.')
param tags object

@description('Required. Address space of the virtual network (stack.yaml network.vnet_cidr).')
param vnetAddressPrefix string

@description('Required. Address prefix of the subnet of the nodes (stack.yaml network.subnet_cidr).')
param subnetAddressPrefix string

@description('Required. The nodes in spec order: [{name, privateIp, zone}] (stack.yaml nodes).')
@minLength(3)
param nodes array

@description('Required. NSG rules in the ARM shape, rendered from stack.yaml security_rules; the only rules of the NSG.')
param securityRules array

@description('Required. SSH port of the nodes (stack.yaml ports.ssh).')
param sshPort int

@description('Optional. Frontend port of the SSH inbound NAT rule of the first node; the next nodes take the following ports.')
@minValue(1024)
@maxValue(65000)
param sshNatFrontendPortStart int = 50001

@description('Required. HAProxy port that leads to the primary (stack.yaml ports.haproxy_primary).')
param haproxyPrimaryPort int

@description('Required. HAProxy port that leads to the replicas (stack.yaml ports.haproxy_replicas).')
param haproxyReplicasPort int

@description('Required. HAProxy health port the load balancer probes over HTTP (stack.yaml ports.haproxy_health).')
param haproxyHealthPort int

@description('Required. Seconds between two load balancer probes (stack.yaml load_balancer.probe_interval_s).')
@minValue(5)
param probeIntervalSeconds int

@description('Required. Probes in a row that change a backend state (stack.yaml load_balancer.probe_threshold).')
@minValue(1)
param probeThreshold int

@description('Required. Where new connections go while every backend is probed down: nowhere (AllProbedDown) or to every backend (AllProbedUp) (stack.yaml load_balancer.no_healthy_backends).')
@allowed([
  'AllProbedDown'
  'AllProbedUp'
])
param probeNoHealthyBackends string

@description('Required. Size of the VMs (stack.yaml azure.vm_size).')
param vmSize string

@description('Required. Admin user of the VMs (stack.yaml admin_user).')
param adminUsername string

@description('Required. OpenSSH public key of the admin user, generated and kept by the deployer.')
@secure()
param sshPublicKey string

@description('Required. Whether the NICs join the load balancer backend pool: false in stage 1 (provision), true in stage 3 (attach).')
param joinBackendPool bool

@description('Required. Whether the stack has a backup repository (stack.yaml backup.enabled): a storage account holding one private blob container, which only the subnet of the nodes reaches.')
param backupEnabled bool

@description('Required. Name of the private blob container of the backup repository (stack.yaml backup.container).')
@minLength(3)
@maxLength(63)
param backupContainer string

// ---------- names ----------

var backendPoolName = 'nodes'
// The frontend's DNS label: the stack's name and a suffix unique to its resource group (a label is
// unique per region, and clients verify TLS against this name: it must not be another stack's).
var frontendDomainNameLabel = '${stackName}-${uniqueString(resourceGroup().id)}'
// The backup repository's storage account: a name unique in all of Azure (3-24 lower-case letters
// and digits), from its resource group, as the frontend's DNS label is.
var backupAccountName = 'pgbackrest${uniqueString(resourceGroup().id)}'
var sshNatRules = [for (node, i) in nodes: {
  name: 'ssh-${node.name}'
  frontendPort: sshNatFrontendPortStart + i
}]

// ---------- resources ----------

module nsg 'modules/nsg.bicep' = {
  name: '${deployment().name}-nsg'
  params: {
    name: '${stackName}-nsg'
    location: location
    tags: tags
    securityRules: securityRules
  }
}

module network 'modules/network.bicep' = {
  name: '${deployment().name}-network'
  params: {
    name: '${stackName}-vnet'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    subnetName: 'nodes'
    subnetAddressPrefix: subnetAddressPrefix
    networkSecurityGroupResourceId: nsg.outputs.resourceId
    natGatewayName: '${stackName}-nat'
    natPublicIpName: '${stackName}-nat-pip'
  }
}

module frontendPublicIp 'modules/publicIp.bicep' = {
  name: '${deployment().name}-lbpip'
  params: {
    name: '${stackName}-lb-pip'
    location: location
    tags: tags
    zones: [
      '1'
      '2'
      '3'
    ]
    domainNameLabel: frontendDomainNameLabel
  }
}

module loadBalancer 'modules/loadBalancer.bicep' = {
  name: '${deployment().name}-lb'
  params: {
    name: '${stackName}-lb'
    location: location
    tags: tags
    publicIpResourceId: frontendPublicIp.outputs.resourceId
    backendPoolName: backendPoolName
    haproxyPrimaryPort: haproxyPrimaryPort
    haproxyReplicasPort: haproxyReplicasPort
    haproxyHealthPort: haproxyHealthPort
    probeIntervalSeconds: probeIntervalSeconds
    probeThreshold: probeThreshold
    probeNoHealthyBackends: probeNoHealthyBackends
    sshPort: sshPort
    sshNatRules: sshNatRules
  }
}

module vms 'modules/vm.bicep' = [for (node, i) in nodes: {
  name: '${deployment().name}-vm-${node.name}'
  params: {
    name: '${stackName}-${node.name}'
    computerName: node.name
    nicName: '${stackName}-${node.name}-nic'
    location: location
    tags: tags
    zone: node.zone
    subnetResourceId: network.outputs.subnetResourceId
    privateIp: node.privateIp
    vmSize: vmSize
    adminUsername: adminUsername
    sshPublicKey: sshPublicKey
    joinBackendPool: joinBackendPool
    backendPoolResourceId: loadBalancer.outputs.backendPoolResourceId
    inboundNatRuleResourceId: loadBalancer.outputs.inboundNatRuleResourceIds[i]
  }
}]

module backupStorage 'modules/storage.bicep' = if (backupEnabled) {
  name: '${deployment().name}-backup'
  params: {
    name: backupAccountName
    location: location
    tags: tags
    subnetResourceId: network.outputs.subnetResourceId
    containerName: backupContainer
  }
}

// ---------- outputs (read by deployer/targets/azure) ----------

@description('The nodes in spec order: [{name, privateIp, nicName, vmName, sshPort}]; sshPort is the frontend port of the node\'s SSH inbound NAT rule.')
output nodes array = [for (node, i) in nodes: {
  name: node.name
  privateIp: vms[i].outputs.privateIp
  nicName: vms[i].outputs.nicName
  vmName: vms[i].outputs.name
  sshPort: sshNatRules[i].frontendPort
}]

@description('The public IPv4 address of the load balancer frontend.')
output frontendIp string = frontendPublicIp.outputs.ipAddress

@description('The DNS name of the load balancer frontend (<stack>-<suffix>.<region>.cloudapp.azure.com). PostgreSQL terminates TLS behind the load balancer (TCP passthrough), so every node certificate names it and frontendIp: a client connects to either with sslmode=verify-full and the CA file of the stack (<state dir>/tls/trust.crt on the control machine). No port is opened for TLS: it runs on the same ports.')
output frontendFqdn string = frontendPublicIp.outputs.fqdn

@description('The name of the load balancer.')
output loadBalancerName string = loadBalancer.outputs.name

@description('The name of the load balancer backend pool.')
output backendPoolName string = loadBalancer.outputs.backendPoolName

@description('The name of the network security group.')
output nsgName string = nsg.outputs.name

@description('The name of the virtual network.')
output vnetName string = network.outputs.name

@description('The name of the storage account of the backup repository (pgBackRest repo1-azure-account); empty when backupEnabled is false. Its shared key is never an output: the deployer reads it with ListKeys.')
output backupAccountName string = backupEnabled ? backupStorage.outputs.name : ''

@description('The host name of the blob endpoint of the backup repository (<account>.blob.core.windows.net), which the nodes reach over HTTPS through the service endpoint of their subnet; empty when backupEnabled is false.')
output backupBlobHost string = backupEnabled ? backupStorage.outputs.blobHost : ''
