metadata name = 'Load balancer'
metadata description = 'Standard public load balancer: one frontend, ONE empty backend pool, an HTTP probe on the HAProxy health port, rules for the HAProxy ports and one SSH inbound NAT rule per node.'

@description('Required. Name of the load balancer.')
param name string

@description('Required. Azure region of the load balancer.')
param location string

@description('Required. Tags of every resource: the stack name and its expiry time.')
param tags object

@description('Required. Resource ID of the Standard public IP address of the frontend.')
param publicIpResourceId string

@description('Optional. Name of the frontend IP configuration.')
param frontendName string = 'frontend'

@description('Optional. Name of the backend pool. It is declared empty: the NICs join it (stage 3), the pool never lists addresses.')
param backendPoolName string = 'nodes'

@description('Required. Port of the HAProxy frontend that leads to the primary (stack.yaml ports.haproxy_primary).')
param haproxyPrimaryPort int

@description('Required. Port of the HAProxy frontend that leads to the replicas (stack.yaml ports.haproxy_replicas).')
param haproxyReplicasPort int

@description('Required. Port of the HAProxy health endpoint the probe asks (stack.yaml ports.haproxy_health).')
param haproxyHealthPort int

@description('Optional. HTTP path of the health endpoint.')
param probePath string = '/health'

@description('Required. Seconds between two probes (stack.yaml load_balancer.probe_interval_s).')
@minValue(5)
param probeIntervalSeconds int

@description('Required. Consecutive failed or successful probes before a backend changes state (stack.yaml load_balancer.probe_threshold).')
@minValue(1)
param probeThreshold int

@description('Required. Where new connections go while every backend is probed down (stack.yaml load_balancer.no_healthy_backends).')
@allowed([
  'AllProbedDown'
  'AllProbedUp'
])
param probeNoHealthyBackends string

@description('Required. SSH port of the nodes, the backend port of the inbound NAT rules (stack.yaml ports.ssh).')
param sshPort int

@description('Required. One inbound NAT rule per node, in node order: [{name, frontendPort}]. The NSG admits them only from the admin CIDR.')
param sshNatRules array

@description('Optional. Idle timeout of load-balanced flows, in minutes.')
@minValue(4)
@maxValue(100)
param idleTimeoutInMinutes int = 4

var frontendId = az.resourceId('Microsoft.Network/loadBalancers/frontendIPConfigurations', name, frontendName)
var backendPoolId = az.resourceId('Microsoft.Network/loadBalancers/backendAddressPools', name, backendPoolName)
var probeName = 'haproxy-health'
var probeId = az.resourceId('Microsoft.Network/loadBalancers/probes', name, probeName)
var balancedPorts = [
  {
    name: 'haproxy-primary'
    port: haproxyPrimaryPort
  }
  {
    name: 'haproxy-replicas'
    port: haproxyReplicasPort
  }
]

resource loadBalancer 'Microsoft.Network/loadBalancers@2024-05-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    frontendIPConfigurations: [
      {
        name: frontendName
        properties: {
          publicIPAddress: {
            id: publicIpResourceId
          }
        }
      }
    ]
    // Declared empty and never given addresses: membership lives on the NICs.
    backendAddressPools: [
      {
        name: backendPoolName
      }
    ]
    probes: [
      {
        name: probeName
        properties: {
          protocol: 'Http'
          port: haproxyHealthPort
          requestPath: probePath
          intervalInSeconds: probeIntervalSeconds
          probeThreshold: probeThreshold
          // Superseded by probeThreshold, but Azure stores a default for it: set, what-if shows no change.
          numberOfProbes: probeThreshold
          noHealthyBackendsBehavior: probeNoHealthyBackends
        }
      }
    ]
    loadBalancingRules: [for rule in balancedPorts: {
      name: rule.name
      properties: {
        frontendIPConfiguration: {
          id: frontendId
        }
        backendAddressPool: {
          id: backendPoolId
        }
        probe: {
          id: probeId
        }
        protocol: 'Tcp'
        frontendPort: rule.port
        backendPort: rule.port
        enableFloatingIP: false
        enableTcpReset: true
        disableOutboundSnat: true
        idleTimeoutInMinutes: idleTimeoutInMinutes
        loadDistribution: 'Default'
      }
    }]
    inboundNatRules: [for rule in sshNatRules: {
      name: rule.name
      properties: {
        frontendIPConfiguration: {
          id: frontendId
        }
        protocol: 'Tcp'
        frontendPort: rule.frontendPort
        backendPort: sshPort
        enableFloatingIP: false
        enableTcpReset: true
        idleTimeoutInMinutes: idleTimeoutInMinutes
      }
    }]
  }
}

@description('The name of the load balancer.')
output name string = loadBalancer.name

@description('The resource ID of the load balancer.')
output resourceId string = loadBalancer.id

@description('The name of the (empty) backend pool.')
output backendPoolName string = backendPoolName

@description('The resource ID of the backend pool.')
output backendPoolResourceId string = az.resourceId('Microsoft.Network/loadBalancers/backendAddressPools', loadBalancer.name, backendPoolName)

@description('The resource IDs of the SSH inbound NAT rules, in node order.')
output inboundNatRuleResourceIds array = [for rule in sshNatRules: az.resourceId('Microsoft.Network/loadBalancers/inboundNatRules', loadBalancer.name, rule.name)]
