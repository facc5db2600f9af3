"""The ``azure`` target: Bicep through ARM deployments, read-backs and faults through the Azure SDK.

One resource group per stack, ``rg-<stack name>``, tagged ``stack``, ``expires`` and ``created-by``;
every resource in it carries the same tags (the Bicep gets them as a parameter). Stage 1 deploys
``bicep/main.bicep`` with ``joinBackendPool=false`` (NICs without a pool reference), stage 3
redeploys it with ``true``: on Azure, pool membership lives on the NIC. Each deployment is previewed
with what-if first and its changes logged. The VMs have no public address: SSH reaches each through
the load balancer's inbound NAT rule, and Patroni's REST API through an SSH tunnel.

Destructive work is fenced: the subscription must be in ``azure.subscription_allow_list``, and
faults and teardown refuse a resource group whose tags do not say the deployer created it for this
stack. Every SDK error becomes a TargetError naming the operation and the resource.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import logging
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Literal

from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError

from deployer.netprobe import tcp
from deployer.secrets import Secrets
from deployer.spec import StackSpec
from deployer.state import StackState, write_private
from deployer.targets.azure import bicep, convert
from deployer.targets.azure.errors import NO_CREDENTIAL, azure_errors
from deployer.targets.azure.identity import ARM_SCOPE, AzureEnv
from deployer.targets.base import (HostAccess, MissingPrerequisite, PoolMember, ProbeResult, RuleInForce,
                                   Target, TargetError)
from deployer.wait import WaitTimeout, wait_until

log = logging.getLogger("deployer.azure")

CREATED_BY = "pgha-deployer"
OUTPUTS = ("nodes", "frontendIp", "loadBalancerName", "backendPoolName", "nsgName", "vnetName")
#: NSG priorities the isolation deny rules take (the lowest free ones, per direction).
ISOLATION_PRIORITIES = range(100, 110)
HOST_KEY_DEADLINE_S = 600
TUNNEL_DEADLINE_S = 10


def _nic_of(resource_id: str) -> str:
    """The NIC name in an ip configuration id (``.../networkInterfaces/<nic>/ipConfigurations/...``)."""
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("networkinterfaces") + 1] if "networkinterfaces" in lowered else resource_id


class _Clients:
    """The SDK clients, built on first use with one credential and the same keyword arguments."""

    def __init__(self, credential, subscription_id: str, kwargs: dict):
        self.credential, self.subscription_id, self.kwargs = credential, subscription_id, kwargs

    def _make(self, cls):
        return cls(self.credential, self.subscription_id, **self.kwargs)

    @functools.cached_property
    def resources(self):
        from azure.mgmt.resource.resources import ResourceManagementClient
        return self._make(ResourceManagementClient)

    @functools.cached_property
    def deployments(self):
        from azure.mgmt.resource.deployments import DeploymentsMgmtClient
        return self._make(DeploymentsMgmtClient).deployments

    @functools.cached_property
    def network(self):
        from azure.mgmt.network import NetworkManagementClient
        return self._make(NetworkManagementClient)

    @functools.cached_property
    def compute(self):
        from azure.mgmt.compute import ComputeManagementClient
        return self._make(ComputeManagementClient)


class AzureTarget(Target):
    """The stack on Azure: one resource group, one ARM deployment of ``bicep/main.bicep``.

    Everything a test needs to fake is a keyword argument: ``credential`` (any TokenCredential),
    ``subscription_id``, ``environ`` (instead of ``os.environ``), ``client_kwargs`` (passed to every
    SDK client: ``transport=``, ``polling_interval=0``, ``retry_total=0``), ``compiler`` (path ->
    ARM JSON, instead of the Bicep CLI), ``which``, ``run``/``popen`` (instead of ``subprocess``'s, for SSH),
    ``keyscan`` ((host, port) -> known_hosts lines), ``clock`` (-> aware UTC datetime), ``secrets``.
    """

    name = "azure"
    capabilities = frozenset({"crash_vm", "isolate", "effective_rules", "vantage_internet"})

    def __init__(self, spec: StackSpec, state: StackState, *, credential=None, subscription_id: str | None = None,
                 environ: Mapping[str, str] | None = None, client_kwargs: dict | None = None,
                 compiler: bicep.Compiler | None = None, which: Callable[[str], str | None] = shutil.which,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                 keyscan: Callable[[str, int], str] | None = None,
                 clock: Callable[[], datetime.datetime] | None = None, secrets: Secrets | None = None):
        super().__init__(spec, state)
        self._env = AzureEnv.from_environ(environ)
        self._credential = credential
        self._subscription_id = subscription_id or self._env.subscription_id
        self._client_kwargs = client_kwargs or {}
        self._compiler_given = compiler is not None
        self._compile = compiler or bicep.cli_compiler(which)
        self._which, self._run, self._popen = which, run, popen
        self._tunnels: dict[str, tuple[subprocess.Popen, int]] = {}
        atexit.register(self.close)
        self._keyscan = keyscan or self._ssh_keyscan
        self._clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self._secrets = secrets
        self.resource_group = f"rg-{spec.name}"
        self.deployment_name = f"{spec.name}-main"

    # ----- plumbing -----

    @functools.cached_property
    def credential(self):
        """The injected credential, else the one the environment calls for (see ``identity``)."""
        return self._credential or self._env.credential()

    @functools.cached_property
    def _az(self) -> _Clients:
        if not self._subscription_id:
            raise MissingPrerequisite(self._no_subscription())
        return _Clients(self.credential, self._subscription_id, {"polling_interval": 5, **self._client_kwargs})

    @property
    def secrets(self) -> Secrets:
        if self._secrets is None:
            self._secrets = Secrets(self.state.dir)
        return self._secrets

    @property
    def known_hosts(self):
        return self.state.dir / "known_hosts"

    def _no_subscription(self) -> str:
        return ("AZURE_SUBSCRIPTION_ID is not set: export the id of the subscription to deploy into "
                "(it must also be listed in azure.subscription_allow_list)")

    def _local_problems(self, *, admin_cidr: bool = True) -> list[str]:
        """What is wrong before Azure is even asked: subscription, allow-list, admin CIDR."""
        problems = []
        if not self._subscription_id:
            problems.append(self._no_subscription())
        elif self._subscription_id not in self.spec.azure.subscription_allow_list:
            problems.append(f"subscription {self._subscription_id} is not in azure.subscription_allow_list "
                            f"of {self.state.spec_path}: refusing to touch it; add it there if it is meant "
                            "for throwaway stacks")
        if admin_cidr and self.spec.azure.admin_cidr is None:
            problems.append("azure.admin_cidr is not set: give the address range SSH may come from "
                            "(e.g. your public address as a /32)")
        return problems

    def _require_allowed(self, *, admin_cidr: bool = True) -> None:
        problems = self._local_problems(admin_cidr=admin_cidr)
        if problems:
            raise MissingPrerequisite("; ".join(problems))

    def _tags(self) -> dict[str, str]:
        expires = self._clock() + datetime.timedelta(hours=self.spec.azure.expiry_hours)
        return {"stack": self.spec.name, "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "created-by": CREATED_BY}

    def _group(self) -> dict | None:
        """The resource group as ARM reports it, or None when it does not exist."""
        with azure_errors("read", f"resource group {self.resource_group}"):
            try:
                return self._az.resources.resource_groups.get(self.resource_group).as_dict()
            except ResourceNotFoundError:
                return None

    def _refuse_foreign(self, group: dict, operation: str) -> None:
        tags = group.get("tags") or {}
        if tags.get("created-by") != CREATED_BY or tags.get("stack") != self.spec.name:
            raise TargetError(
                f"refusing to {operation}: resource group {self.resource_group} has tags {tags or '{}'}, not "
                f"created-by={CREATED_BY} and stack={self.spec.name}, so the deployer did not create it")

    def _guard(self, operation: str) -> None:
        """Safety rail before any destructive call: allowed subscription, our own resource group."""
        self._require_allowed(admin_cidr=False)
        group = self._group()
        if group is None:
            raise TargetError(f"cannot {operation}: resource group {self.resource_group} does not exist "
                              "(provision the stack first)")
        self._refuse_foreign(group, operation)

    @property
    def outputs(self) -> dict:
        """The deployment's outputs recorded by the last provision or attach."""
        try:
            return self.state.data["outputs"]
        except KeyError:
            raise TargetError(f"stack {self.spec.name} has no deployment outputs: run provision first") from None

    def _node(self, name: str) -> dict:
        for node in self.outputs["nodes"]:
            if node["name"] == name:
                return node
        raise TargetError(f"no node {name!r} in the deployment outputs "
                          f"({', '.join(n['name'] for n in self.outputs['nodes'])})")

    def _parameters(self, join_pool: bool, tags: dict[str, str]) -> dict:
        try:
            from deployer.targets.azure.parameters import bicep_parameters
        except ModuleNotFoundError as exc:
            raise TargetError(f"the Bicep parameters module is missing ({exc})") from None
        return bicep_parameters(self.spec, join_pool=join_pool, ssh_public_key=self.secrets.ssh_public_key,
                                tags=tags)

    def _template(self) -> dict:
        return self._compile(bicep.MAIN_BICEP)

    def _record(self, **data) -> None:
        self.state.data.update(data)
        self.state.save()

    # ----- stages -----

    def preflight(self) -> None:
        """Check, creating nothing: ``AZURE_SUBSCRIPTION_ID`` set and in ``azure.subscription_allow_list``,
        ``azure.admin_cidr`` set, a Bicep CLI present (unless a compiler was injected), and then
        (only when all of those hold, so nothing leaves this machine before) a credential that
        yields an ARM token. Every problem found goes into one MissingPrerequisite."""
        problems = self._local_problems()
        if not self._compiler_given and bicep.find_cli(self._which) is None:
            problems.append(bicep.NO_CLI)
        if problems:  # no token request (no network at all) while anything static is missing
            problems.append("the Azure credential was not tried: fix the above first")
        else:
            try:
                self.credential.get_token(ARM_SCOPE)
            except MissingPrerequisite as exc:
                problems.append(str(exc))
            except ClientAuthenticationError:
                problems.append(NO_CREDENTIAL)
        if problems:
            raise MissingPrerequisite("azure preflight failed, nothing was created:\n  - " + "\n  - ".join(problems))

    def what_if(self) -> list[str]:
        """What ``provision`` would create or change, one az-style line per resource (``+ Create
        Microsoft.Network/loadBalancers/pgha-lb``), also logged; creates and changes nothing in
        Azure (no PUT is sent; the stack's SSH key is generated locally if new, as ``up`` would).
        Without the resource group yet, the preview runs at subscription scope over a wrapper that
        creates the group and deploys into it; a foreign group of the same name is refused."""
        self._require_allowed()
        template, group = self._template(), self._group()
        if group is not None:
            self._refuse_foreign(group, f"deploy stack {self.spec.name} into it")
        tags = self._tags()
        return self._what_if(template, self._parameters(False, tags), tags, group_exists=group is not None)

    def is_up(self) -> bool:
        """True when the deployment's outputs are recorded, the group is ours and every VM runs."""
        if "outputs" not in self.state.data or (group := self._group()) is None:
            return False
        self._refuse_foreign(group, f"use resource group {self.resource_group}")
        for node in self.outputs["nodes"]:
            with azure_errors("read the instance view of", f"VM {node['vmName']}"):
                try:
                    view = self._az.compute.virtual_machines.instance_view(
                        self.resource_group, node["vmName"]).as_dict()
                except ResourceNotFoundError:
                    return False
            if "PowerState/running" not in {st.get("code") for st in view.get("statuses") or []}:
                return False
        return True

    def provision(self) -> None:
        """Stage 1, converging: create or update ``rg-<stack>`` with the stack's tags (``expires`` =
        now + ``azure.expiry_hours``), preview the deployment with what-if (changes logged), deploy
        ``main.bicep`` incrementally with ``joinBackendPool=false``, record its outputs in
        ``state.data["outputs"]``, and trust each VM's SSH host key on first use (``ssh-keyscan``
        through its NAT port until sshd answers). A stale stack is converged, not recreated: the
        redeploy restores the NSG's rules (isolation rules go) and VMs this target powered off are
        started again. A same-named group the deployer did not create is refused."""
        self._require_allowed()
        template, group = self._template(), self._group()
        if group is not None:
            self._refuse_foreign(group, f"deploy stack {self.spec.name} into it")
        tags = self._tags()
        with azure_errors("create or update", f"resource group {self.resource_group}"):
            self._az.resources.resource_groups.create_or_update(
                self.resource_group, {"location": self.spec.azure.location, "tags": tags})
        self._record(resource_group=self.resource_group, subscription_id=self._subscription_id, tags=tags)
        self._deploy(template, join_pool=False, tags=tags)
        self._record(isolated=[])
        for node in list(self.state.data.get("stopped", [])):
            self.start_vm(node)
        self._trust_host_keys()

    def _what_if(self, template: dict, parameters: dict, tags: dict, *, group_exists: bool) -> list[str]:
        props = {"mode": "Incremental", "template": template, "parameters": parameters}
        where = f"deployment {self.deployment_name} in {self.resource_group}"
        with azure_errors("preview (what-if)", where):
            if group_exists:
                result = self._az.deployments.begin_what_if(
                    self.resource_group, self.deployment_name, {"properties": props}).result()
            else:
                result = self._az.deployments.begin_what_if_at_subscription_scope(
                    f"{self.spec.name}-plan",
                    {"location": self.spec.azure.location,
                     "properties": {"mode": "Incremental", "template": self._wrapper(template, parameters, tags)}},
                ).result()
        lines = convert.what_if_lines(result.as_dict())
        log.info("what-if for %s: %d change(s)%s", where, len(lines), "".join(f"\n  {line}" for line in lines))
        return lines

    def _wrapper(self, template: dict, parameters: dict, tags: dict) -> dict:
        """A subscription-scope template: the resource group, then ``template`` deployed into it."""
        group_id = f"[subscriptionResourceId('Microsoft.Resources/resourceGroups', '{self.resource_group}')]"
        return {
            "$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "resources": [
                {"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2022-09-01",
                 "name": self.resource_group, "location": self.spec.azure.location, "tags": tags},
                {"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01",
                 "name": self.deployment_name, "resourceGroup": self.resource_group, "dependsOn": [group_id],
                 "properties": {"mode": "Incremental", "expressionEvaluationOptions": {"scope": "inner"},
                                "template": template, "parameters": parameters}},
            ],
        }

    def _deploy(self, template: dict, *, join_pool: bool, tags: dict) -> list[str]:
        """What-if, then the deployment itself; outputs go to the state."""
        parameters = self._parameters(join_pool, tags)
        lines = self._what_if(template, parameters, tags, group_exists=True)
        where = f"deployment {self.deployment_name} in {self.resource_group}"
        with azure_errors("deploy", where):
            result = self._az.deployments.begin_create_or_update(
                self.resource_group, self.deployment_name,
                {"properties": {"mode": "Incremental", "template": template, "parameters": parameters},
                 "tags": tags}).result().as_dict()
        outputs = {k: v.get("value") for k, v in (result.get("properties", {}).get("outputs") or {}).items()}
        missing = [k for k in OUTPUTS if k not in outputs]
        if missing:
            raise TargetError(f"{where} succeeded but lacks the outputs {', '.join(missing)}: check bicep/main.bicep")
        self._record(outputs=outputs)
        log.info("%s succeeded (joinBackendPool=%s): frontend %s, nodes %s", where, join_pool, outputs["frontendIp"],
                 ", ".join(f"{n['name']}={n['privateIp']}" for n in outputs["nodes"]))
        return lines

    def _ssh_keyscan(self, host: str, port: int) -> str:
        done = self._run(["ssh-keyscan", "-T", "5", "-p", str(port), host], capture_output=True, text=True,
                         check=False)
        return done.stdout if done.returncode == 0 else ""

    def _trust_host_keys(self) -> None:
        """Trust on first use: record each VM's host key as its sshd offers it through the NAT port,
        polling until it answers (the VM may still boot)."""
        lines = []
        for host in self.hosts():
            try:
                lines.append(wait_until(
                    f"{host.node}'s SSH host key from {host.ssh_host}:{host.ssh_port} (if never: is "
                    "azure.admin_cidr this machine's address?)",
                    lambda h=host: self._keyscan(h.ssh_host, h.ssh_port).strip(), timeout=HOST_KEY_DEADLINE_S,
                    interval=5))
            except WaitTimeout as exc:
                raise TargetError(str(exc)) from None
        write_private(self.known_hosts, "\n".join(lines) + "\n")

    def hosts(self) -> list[HostAccess]:
        """One HostAccess per node, in spec order: ``ssh_host`` is the load balancer's public frontend,
        ``ssh_port`` the node's inbound NAT port (deployment outputs), the user ``admin_user``,
        the stack's own key. Host keys are trusted on first use: provision writes them to
        ``known_hosts`` in the state directory, and SSH checks them strictly from then on."""
        by_name = {n["name"]: n for n in self.outputs["nodes"]}
        return [HostAccess(node=node.name, address=by_name[node.name]["privateIp"],
                           ssh_host=self.outputs["frontendIp"], ssh_port=int(by_name[node.name]["sshPort"]),
                           user=self.spec.admin_user, key_file=self.secrets.ssh_key,
                           known_hosts=self.known_hosts)
                for node in self.spec.nodes]

    def ansible_vars(self) -> dict:
        """Azure VMs need a fresh apt cache; they have no watchdog device Patroni could rely on."""
        return {"common_apt_update_cache": True, "patroni_watchdog_mode": "off"}

    def attach(self) -> None:
        """Stage 3: redeploy ``main.bicep`` with ``joinBackendPool=true`` (the NICs' ip configurations then
        reference the backend pool), with what-if first and the provision's tags (expiry unchanged).
        Idempotent: a second run is a no-change deployment."""
        self._require_allowed()
        self._deploy(self._template(), join_pool=True, tags=self.state.data.get("tags") or self._tags())

    # ----- read-backs -----

    def security_rules(self) -> list[RuleInForce]:
        """The NSG's own rules (scope ``nsg``; Azure's default rules left out, they are the same for
        every NSG), then each node's effective rules as Azure evaluates them for its NIC (scope = the
        node name; default rules included, since they are in force there). Sources are normalised
        by ``convert.prefix`` (``0.0.0.0/0`` -> ``*``, CIDRs with their length), so both scopes
        compare with ``resolve_source``. Effective rules need the VM running."""
        net, rg = self._az.network, self.resource_group
        nsg_name = self.outputs["nsgName"]
        with azure_errors("read", f"NSG {nsg_name}"):
            nsg = net.network_security_groups.get(rg, nsg_name).as_dict()
        rules = sorted((convert.rule(r, "nsg") for r in nsg.get("properties", {}).get("securityRules") or []),
                       key=lambda r: (r.direction, r.priority))
        for node in self.outputs["nodes"]:
            with azure_errors("read the effective rules of", f"NIC {node['nicName']} ({node['name']})"):
                result = net.network_interfaces.begin_list_effective_network_security_groups(
                    rg, node["nicName"]).result().as_dict()
            rules += sorted((convert.rule(r, node["name"]) for group in result.get("value") or []
                             for r in group.get("effectiveSecurityRules") or []),
                            key=lambda r: (r.direction, r.priority))
        return rules

    def resolve_source(self, source: str) -> tuple[str, ...]:
        """``Any``/``*`` -> ``*``; ``Management`` -> ``azure.admin_cidr``; other tags (``Internet``,
        ``VirtualNetwork``, ``AzureLoadBalancer``) stay, since the NSG holds them as service tags;
        a CIDR in its normal form."""
        if source == "Management":
            if self.spec.azure.admin_cidr is None:
                raise TargetError("the Management source needs azure.admin_cidr, which is not set")
            return (str(self.spec.azure.admin_cidr),)
        return ("*",) if source == "Any" else (convert.prefix(source),)

    def backend_pool(self) -> list[PoolMember]:
        """The pool's NIC ip configurations (read-only ``backendIPConfigurations``), mapped to nodes by
        NIC name, healthy when ``Up`` in the health of every load-balancing rule the pool serves
        (``load_balancing_rules.begin_health``); the address is the one the health report gives.
        Spec order; a NIC of no node is listed after them under its NIC name."""
        net, rg, lb = self._az.network, self.resource_group, self.outputs["loadBalancerName"]
        pool_name = self.outputs["backendPoolName"]
        with azure_errors("read", f"backend pool {pool_name} of load balancer {lb}"):
            pool = net.load_balancer_backend_address_pools.get(rg, lb, pool_name).as_dict().get("properties", {})
        nics = [_nic_of(c["id"]) for c in pool.get("backendIPConfigurations") or []]
        if not nics:
            return []
        up: dict[str, bool] = {}
        address: dict[str, str] = {}
        for ref in pool.get("loadBalancingRules") or []:
            rule = ref["id"].rpartition("/")[2]
            with azure_errors("read the probe health of", f"rule {rule} of load balancer {lb}"):
                health = net.load_balancer_load_balancing_rules.begin_health(rg, lb, rule).result().as_dict()
            for entry in health.get("loadBalancerBackendAddresses") or []:
                nic = _nic_of(entry.get("networkInterfaceIPConfigurationId", "")).lower()
                up[nic] = up.get(nic, True) and entry.get("state") == "Up"
                address[nic] = entry.get("ipAddress") or address.get(nic, "")
        by_nic = {n["nicName"].lower(): n for n in self.outputs["nodes"]}
        order = {node.name: i for i, node in enumerate(self.spec.nodes)}
        members = [PoolMember(node=by_nic[nic.lower()]["name"] if nic.lower() in by_nic else nic,
                              address=address.get(nic.lower()) or by_nic.get(nic.lower(), {}).get("privateIp", ""),
                              healthy=up.get(nic.lower(), False)) for nic in nics]
        return sorted(members, key=lambda m: (order.get(m.node, len(order)), m.node))

    def frontend(self) -> tuple[str, int]:
        """The public frontend address (deployment output) and ``ports.haproxy_primary``."""
        return self.outputs["frontendIp"], self.spec.ports.haproxy_primary

    def _vnet_node(self, avoid: str = "") -> HostAccess:
        down = set(self.state.data.get("isolated", [])) | set(self.state.data.get("stopped", []))
        for host in self.hosts():
            if host.node not in down and avoid not in (host.node, host.address):
                return host
        raise TargetError("no node can probe from inside the VNet: every other node is isolated or stopped")

    def vantage(self, name: Literal["internet", "vnet"]) -> list[str]:
        """``internet``: [] (this machine is outside the VNet, where clients are). ``vnet``:
        NotImplementedError, because the VNet holds no host but the nodes, which lack this checkout
        and its Python; ``probe`` from ``vnet`` works (``nc`` over SSH on a node)."""
        if name == "internet":
            return []
        if name == "vnet":
            raise NotImplementedError("the azure target has no vnet vantage for local programs: the only hosts "
                                      "in the VNet are the nodes, which lack this checkout; use probe('vnet', ...)")
        raise ValueError(f"unknown vantage point {name!r} (internet, vnet)")

    def _address(self, dst: str) -> str:
        nodes = self.state.data.get("outputs", {}).get("nodes", [])
        return next((n["privateIp"] for n in nodes if n["name"] == dst), dst)

    def probe(self, src: str, dst: str, port: int, timeout: float = 3.0) -> ProbeResult:
        """A real TCP connect to ``dst`` (an address, or a node name = its private address).

        From ``internet`` (or ``management``: the same machine): from this process, bounded by
        ``timeout``. From a node, or from ``vnet`` (a node other than ``dst`` that is neither
        isolated nor stopped): ``nc -z -w`` over SSH, ``seconds`` then including the SSH round trip.
        TargetError when the vantage itself fails (SSH down, no ``nc`` on the node)."""
        address = self._address(dst)
        if src in ("internet", "management"):
            result = tcp(address, port, timeout)
            return ProbeResult(src, dst, port, result["reachable"], round(result["seconds"], 3), result["detail"])
        host = self._vnet_node(avoid=dst) if src == "vnet" else next(
            (h for h in self.hosts() if h.node == src), None)
        if host is None:
            raise TargetError(f"unknown probe source {src!r}: internet, management, vnet or a node name")
        cmd = ["ssh", *host.ssh_args(), f"{host.user}@{host.ssh_host}", "--",
               "nc", "-z", "-w", str(max(1, math.ceil(timeout))), address, str(port)]
        start = time.perf_counter()
        try:
            done = self._run(cmd, capture_output=True, text=True, timeout=timeout + 30, check=False)
        except subprocess.TimeoutExpired:
            raise TargetError(f"probe from {src}: SSH to {host.node} did not return in {timeout + 30:.0f} s") from None
        seconds = round(time.perf_counter() - start, 3)
        if done.returncode == 255:
            raise TargetError(f"probe from {src}: SSH to {host.node} ({host.ssh_host}:{host.ssh_port}) failed: "
                              f"{done.stderr.strip()[-300:]}")
        if done.returncode == 127:
            raise TargetError(f"probe from {src}: `nc` is not installed on {host.node}")
        detail = "connected" if done.returncode == 0 else (done.stderr.strip() or "refused or timed out")
        return ProbeResult(src, dst, port, done.returncode == 0, seconds, f"via {host.node}: {detail}")

    def patroni_url(self, node: str) -> str:
        """``http://127.0.0.1:<port>``: an SSH tunnel (``-L``) through the node's NAT port to its
        Patroni API, started on first use and restarted when it died; ``close`` ends them. When the
        tunnel cannot open (node down), the URL points at a closed port, so a request fails fast."""
        tunnel = self._tunnels.get(node)
        if tunnel is None or tunnel[0].poll() is not None:
            host = next((h for h in self.hosts() if h.node == node), None)
            if host is None:
                raise TargetError(f"no node {node!r} in the deployment outputs")
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            proc = self._popen(["ssh", *host.ssh_args(), "-N", "-o", "ExitOnForwardFailure=yes",
                                "-L", f"127.0.0.1:{port}:{host.address}:{self.spec.ports.patroni}",
                                f"{host.user}@{host.ssh_host}"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._tunnels[node] = tunnel = (proc, port)
            try:
                wait_until(f"the SSH tunnel to {node}'s Patroni API on 127.0.0.1:{port}",
                           lambda: proc.poll() is not None or tcp("127.0.0.1", port, 1)["reachable"],
                           timeout=TUNNEL_DEADLINE_S, interval=0.2)
            except WaitTimeout as exc:
                log.warning("%s", exc)
        return f"http://127.0.0.1:{tunnel[1]}"

    def close(self) -> None:
        """End the SSH tunnels this target started (only those)."""
        for proc, _ in self._tunnels.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._tunnels.clear()

    # ----- faults -----

    def _mark(self, key: str, node: str, on: bool) -> None:
        names = [n for n in self.state.data.get(key, []) if n != node] + ([node] if on else [])
        self._record(**{key: names})

    def crash_vm(self, node: str) -> None:
        """Power the node's VM off without a guest shutdown (``skip_shutdown=True``): its processes die
        at once, its disks stay. Heal with ``start_vm``. Refused outside our resource group."""
        vm = self._node(node)["vmName"]
        self._guard(f"power off VM {vm}")
        with azure_errors("power off", f"VM {vm} ({node})"):
            self._az.compute.virtual_machines.begin_power_off(self.resource_group, vm, skip_shutdown=True).result()
        self._mark("stopped", node, True)
        log.info("%s: VM %s powered off without shutdown", node, vm)

    def start_vm(self, node: str) -> None:
        """Start the node's VM again (a no-op on a running VM)."""
        vm = self._node(node)["vmName"]
        self._guard(f"start VM {vm}")
        with azure_errors("start", f"VM {vm} ({node})"):
            self._az.compute.virtual_machines.begin_start(self.resource_group, vm).result()
        self._mark("stopped", node, False)
        log.info("%s: VM %s started", node, vm)

    def _isolation_names(self, node: str) -> tuple[str, str]:
        return f"pgha-isolate-{node}-in", f"pgha-isolate-{node}-out"

    def _put_nsg(self, nsg: dict, rules: list[dict], what: str) -> None:
        body = {"location": nsg["location"], "tags": nsg.get("tags") or {},
                "properties": {"securityRules": rules, "flushConnection": True}}
        with azure_errors(what, f"NSG {nsg['name']}"):
            self._az.network.network_security_groups.begin_create_or_update(
                self.resource_group, nsg["name"], body).result()

    def _nsg(self) -> tuple[dict, list[dict]]:
        name = self.outputs["nsgName"]
        with azure_errors("read", f"NSG {name}"):
            nsg = self._az.network.network_security_groups.get(self.resource_group, name).as_dict()
        rules = [{"name": r["name"], "properties": {k: v for k, v in r["properties"].items()
                                                    if k != "provisioningState"}}
                 for r in nsg.get("properties", {}).get("securityRules") or []]
        return nsg, rules

    def isolate(self, node: str) -> None:
        """Deny all traffic to and from the node's private address with two NSG rules at the lowest
        free priorities of 100-109 (per direction), and ``flushConnection`` on, so established flows
        are cut too. Idempotent. Caveat: a spec rule with a lower priority still passes first (the
        default ``allow-clients-haproxy`` at 100 admits what the load balancer forwards; the load
        balancer stops forwarding once its probe, denied, fails). A redeploy removes these rules."""
        address = self._node(node)["privateIp"]
        self._guard(f"isolate {node}")
        nsg, rules = self._nsg()
        names = self._isolation_names(node)
        if {r["name"] for r in rules} >= set(names):
            return
        new = []
        for name, direction in zip(names, ("Inbound", "Outbound")):
            taken = {r["properties"]["priority"] for r in rules + new if r["properties"]["direction"] == direction}
            free = [p for p in ISOLATION_PRIORITIES if p not in taken]
            if not free:
                raise TargetError(f"cannot isolate {node}: NSG {nsg['name']} has no free {direction.lower()} "
                                  f"priority in {ISOLATION_PRIORITIES.start}-{ISOLATION_PRIORITIES.stop - 1}")
            inbound = direction == "Inbound"
            new.append({"name": name, "properties": {
                "description": f"pgha fault: isolate {node}", "protocol": "*", "access": "Deny",
                "direction": direction, "priority": free[0], "sourcePortRange": "*", "destinationPortRange": "*",
                "sourceAddressPrefix": "*" if inbound else address,
                "destinationAddressPrefix": address if inbound else "*"}})
        self._put_nsg(nsg, [r for r in rules if r["name"] not in names] + new, f"isolate {node} in")
        self._mark("isolated", node, True)
        log.info("%s: isolated (%s denied both ways, flows flushed)", node, address)

    def heal(self, node: str) -> None:
        """Remove exactly the node's isolation rules (flows are re-evaluated again); a no-op, with no
        write, when there are none."""
        self._node(node)
        self._guard(f"heal {node}")
        nsg, rules = self._nsg()
        names = set(self._isolation_names(node))
        kept = [r for r in rules if r["name"] not in names]
        if len(kept) != len(rules):
            self._put_nsg(nsg, kept, f"heal {node} in")
            log.info("%s: isolation rules removed", node)
        self._mark("isolated", node, False)

    # ----- teardown -----

    def teardown(self) -> None:
        """Delete ``rg-<stack>`` and wait for it; nothing to do when it is already gone. Refused when
        the group's tags do not show the deployer created it for this stack."""
        self._require_allowed(admin_cidr=False)
        group = self._group()
        if group is None:
            log.info("resource group %s is already gone", self.resource_group)
            return
        self._refuse_foreign(group, f"delete resource group {self.resource_group}")
        with azure_errors("delete", f"resource group {self.resource_group}"):
            try:
                self._az.resources.resource_groups.begin_delete(self.resource_group).result()
            except ResourceNotFoundError:
                pass
        self._record(isolated=[], stopped=[])
        log.info("resource group %s deleted", self.resource_group)

    def leftovers(self) -> list[str]:
        """The resource group, if it still exists, and every resource still listed in it, one line
        each (``<type> <name>``); empty when the group is gone (404)."""
        group = self._group()
        if group is None:
            return []
        state = group.get("properties", {}).get("provisioningState", "?")
        lines = [f"Microsoft.Resources/resourceGroups {self.resource_group} (provisioningState {state})"]
        with azure_errors("list the resources of", f"resource group {self.resource_group}"):
            try:
                lines += [f"{r.type} {r.name}" for r in
                          self._az.resources.resources.list_by_resource_group(self.resource_group)]
            except ResourceNotFoundError:
                return []
        return lines
