"""The ``azure`` target: Bicep through ARM deployments, read-backs and faults through the Azure SDK.

One resource group per stack, ``rg-<stack name>``, tagged ``stack``, ``expires`` and ``created-by``;
every resource in it carries the same tags (the Bicep gets them as a parameter). Stage 1 deploys
``bicep/main.bicep`` with ``joinBackendPool=false`` (NICs without a pool reference), stage 3
redeploys it with ``true``: on Azure, pool membership lives on the NIC. Each deployment is previewed
with what-if first and its changes logged (``deployment``). The VMs have no public address: SSH
reaches each through the load balancer's inbound NAT rule, and Patroni's REST API through an SSH
tunnel (``ssh``). Faults are NSG deny rules and power-offs (``nsg_faults``); read-backs are what
ARM reports (``readbacks``). Scale in takes a leaving node's NIC out of the pool and, at the next
provision, deletes the VM, NIC and OS disk of a node the spec dropped (``scale_in``).

Backups: with ``backup.enabled``, the deployment also creates pgBackRest's repository, a storage
account whose one private container only the nodes' subnet reaches (``backup``); provision reads
the account's key with ListKeys into the state directory (mode 0600), never printing it.

TLS: the load balancer's public IP has a DNS name (``<stack>-<suffix>.<region>.cloudapp.azure.com``);
its address and that name, as the deployment's outputs report them, are ``tls_names``: every node
certificate holds both, so a client verifies whichever it dials (``sslmode=verify-full``) against the
stack's CA. TLS runs on the ports the NSG already admits: nothing is opened for it.

Destructive work is fenced: the subscription must be in ``azure.subscription_allow_list``, and
faults and teardown refuse a resource group whose tags do not say the deployer created it for this
stack. Every SDK error becomes a TargetError naming the operation and the resource.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping

from azure.core.exceptions import ClientAuthenticationError

from deployer.netprobe import tcp
from deployer.secrets import Secrets
from deployer.spec import SpecError, StackSpec
from deployer.state import StackState
from deployer.targets.azure import (backup, bicep, convert, deployment, nsg_faults, prerequisites, readbacks, scale_in,
                                    ssh)
from deployer.targets.azure.clients import Clients
from deployer.targets.azure.errors import credential_problem
from deployer.targets.azure.identity import ARM_SCOPE, AzureEnv
from deployer.targets.azure.parameters import bicep_parameters
from deployer.targets.azure.parameters import resolve_source as nsg_source
from deployer.targets.base import (BackupRepository, HostAccess, MissingPrerequisite, PoolMember, RuleInForce, Target,
                                   TargetError)
from deployer.wait import wait_until

#: The nodes' subnet, as bicep/main.bicep names it in the virtual network.
SUBNET = "nodes"
log = logging.getLogger("deployer.azure")


class AzureTarget(Target):
    """The stack on Azure: one resource group, one ARM deployment of ``bicep/main.bicep``.

    Everything a test needs to fake is a keyword argument: ``credential`` (any TokenCredential),
    ``subscription_id``, ``environ`` (instead of ``os.environ``), ``client_kwargs`` (passed to every
    SDK client: ``transport=``, ``polling_interval=0``, ``retry_total=0``), ``compiler`` (path ->
    ARM JSON, instead of the Bicep CLI), ``which``, ``run``/``popen`` (instead of ``subprocess``'s, for SSH),
    ``keyscan`` ((host, port) -> known_hosts lines), ``clock`` (-> aware UTC datetime), ``secrets``.
    """

    name = "azure"
    #: ``backend_pool()`` runs one long-running health query per load-balancing rule, concurrently:
    #: 5-20 s on Azure. Every wait on the pool derives from it (``Target.budgets``).
    readback_latency_s = 20.0

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
        self._which, self._run = which, run
        self._tunnels = ssh.Tunnels(popen)
        atexit.register(self.close)
        self._keyscan = keyscan or functools.partial(ssh.keyscan, run)
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
    def _az(self) -> Clients:
        if not self._subscription_id:
            raise MissingPrerequisite(self._no_subscription())
        return Clients(self.credential, self._subscription_id, {"polling_interval": 5, **self._client_kwargs})

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
        return deployment.tags(self.spec.name, self.spec.azure.expiry_hours, self._clock())

    def _group(self) -> dict | None:
        return deployment.group(self._az, self.resource_group)

    def _refuse_foreign(self, group: dict, operation: str) -> None:
        deployment.refuse_foreign(group, self.resource_group, self.spec.name, operation)

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
        return bicep_parameters(self.spec, join_pool=join_pool, ssh_public_key=self.secrets.ssh_public_key, tags=tags)

    def _record(self, **data) -> None:
        self.state.data.update(data)
        self.state.save()

    def _deploy(self, template: dict, *, join_pool: bool, tags: dict) -> None:
        self._record(outputs=deployment.deploy(self._az, self.resource_group, self.deployment_name, template,
                                               self._parameters(join_pool, tags), tags))

    def _joined(self, group: dict | None) -> bool:
        """Whether the NICs are in the backend pool now (attach ran): a redeploy keeps them there."""
        return group is not None and "outputs" in self.state.data and \
            readbacks.pool_joined(self._az, self.resource_group, self.outputs)

    def _open_group(self) -> tuple[dict, dict | None]:
        """The compiled template and the group, once the fence holds (a foreign group is refused)."""
        self._require_allowed()
        template, group = self._compile(bicep.MAIN_BICEP), self._group()
        if group is not None:
            self._refuse_foreign(group, f"deploy stack {self.spec.name} into it")
        return template, group

    # ----- stages -----

    def preflight(self) -> None:
        """Check, creating nothing: ``AZURE_SUBSCRIPTION_ID`` set and in ``azure.subscription_allow_list``,
        ``azure.admin_cidr`` set, a Bicep CLI present (unless a compiler was injected), and then
        (only when all of those hold, so nothing leaves this machine before) a credential that
        yields an ARM token, and then what the subscription must offer (``prerequisites``: the
        encryption-at-host feature, the VM size in the region and zones). Every problem found goes
        into one MissingPrerequisite."""
        problems = self._local_problems()
        if not self._compiler_given and bicep.find_cli(self._which) is None:
            problems.append(bicep.NO_CLI)
        if problems:  # no token request (no network at all) while anything static is missing
            problems.append("the Azure credential was not tried: fix the above first")
        else:
            try:
                self.credential.get_token(ARM_SCOPE)
                problems += prerequisites.problems(self._az, self.spec)
            except MissingPrerequisite as exc:
                problems.append(str(exc))
            except ClientAuthenticationError as exc:
                problems.append(credential_problem(exc))
            except TargetError as exc:
                problems.append(str(exc))
        if problems:
            raise MissingPrerequisite("azure preflight failed, nothing was created:\n  - " + "\n  - ".join(problems))

    def what_if(self) -> list[str]:
        """What ``provision`` would create or change, one az-style line per resource (``+ Create
        Microsoft.Network/loadBalancers/pgha-lb``), also logged; creates and changes nothing in
        Azure (no PUT is sent; the stack's SSH key is generated locally if new, as ``up`` would).
        Without the resource group yet, the preview runs at subscription scope over a wrapper that
        creates the group and deploys into it; a foreign group of the same name is refused."""
        template, group = self._open_group()
        tags = self._tags()
        new_group = None if group else (f"{self.spec.name}-plan", self.spec.azure.location, tags)
        return convert.what_if_lines(deployment.what_if(self._az, self.resource_group, self.deployment_name, template,
                                                        self._parameters(self._joined(group), tags),
                                                        new_group=new_group))

    def drift(self) -> list[str]:
        """What redeploying the stack as it stands would change, one line per real change
        (``convert.drift_lines``): the what-if of the parameters of its last deployment (the attach
        ones once attached) and its recorded tags. Empty when the deployment is idempotent; the
        pipeline fails on anything else. TargetError when nothing was deployed."""
        template, group = self._open_group()
        if group is None or "tags" not in self.state.data:
            raise TargetError(f"stack {self.spec.name} has nothing deployed to compare (provision it first)")
        tags = self.state.data["tags"]
        return convert.drift_lines(deployment.what_if(self._az, self.resource_group, self.deployment_name, template,
                                                      self._parameters(self._joined(group), tags)))

    def is_up(self) -> bool:
        """True when the deployment's outputs are recorded, the group is ours and every VM runs."""
        if "outputs" not in self.state.data or (group := self._group()) is None:
            return False
        self._refuse_foreign(group, f"use resource group {self.resource_group}")
        return all(readbacks.vm_running(self._az, self.resource_group, n["vmName"]) for n in self.outputs["nodes"])

    def provision(self) -> None:
        """Stage 1, converging: create or update ``rg-<stack>`` with the stack's tags (``expires`` =
        now + ``azure.expiry_hours``), preview the deployment with what-if (changes logged), deploy
        ``main.bicep`` incrementally with ``joinBackendPool=false``, record its outputs in
        ``state.data["outputs"]``, and trust each VM's SSH host key on first use (``ssh-keyscan``
        through its NAT port until sshd answers). A stale stack is converged, not recreated: the
        redeploy restores the NSG's rules (isolation rules go), keeps the NICs in the backend pool
        when they are there (attach ran: ``joinBackendPool=true``, so re-provisioning a stack with
        one stopped VM takes no member out), and VMs this target powered off are started again. A
        same-named group the deployer did not create is refused. With ``backup.enabled``, the
        repository's storage account is deployed too and its key read into the state directory
        (``backup``), again at each provision (a regenerated key is picked up). Scale in: before
        the deployment, the VM, NIC and OS disk of every node the spec no longer has are deleted
        (``scale_in``: the stack's VMs as ARM lists them, by computer name), one sentence logged per
        node; ``up`` has retired each such node from the cluster first (``deployer.scaling``)."""
        template, group = self._open_group()
        tags = self._tags()
        joined = self._joined(group)
        deployment.create_group(self._az, self.resource_group, self.spec.azure.location, tags)
        self._record(resource_group=self.resource_group, subscription_id=self._subscription_id, tags=tags)
        if group is not None:
            for vm in scale_in.strays(self._az, self.resource_group, self.spec.name, {n.name for n in self.spec.nodes}):
                log.info("%s", scale_in.remove(self._az, self.resource_group, vm))
        self._deploy(template, join_pool=joined, tags=tags)
        if self.spec.backup.enabled:
            account, _ = backup.endpoint(self.outputs)
            backup.fetch_key(self._az, self.resource_group, account, self.state.dir)
            log.info("backup repository: container %s of storage account %s, its key stored in %s (mode 0600)",
                     self.spec.backup.container, account, self.state.dir / backup.KEY_FILE)
        self._record(isolated=[])
        for node in self.faulted("stopped"):
            self.start_vm(node)
        ssh.trust_host_keys(self.hosts(), self._keyscan, self.known_hosts)

    def hosts(self) -> list[HostAccess]:
        """One HostAccess per node, in spec order: ``ssh_host`` is the load balancer's public frontend,
        ``ssh_port`` the node's inbound NAT port (deployment outputs), the user ``admin_user``,
        the stack's own key. Host keys are trusted on first use: provision writes them to
        ``known_hosts`` in the state directory, and SSH checks them strictly from then on."""
        return ssh.hosts(self.spec, self.outputs, self.secrets.ssh_key, self.known_hosts)

    def ansible_vars(self) -> dict:
        """Azure VMs need a fresh apt cache; Patroni's watchdog is the spec's (softdog, see ``watchdog_device``)."""
        return {"common_apt_update_cache": True, "patroni_watchdog_mode": self.spec.patroni.watchdog_mode}

    def watchdog_device(self) -> str:
        """``softdog``, loaded by the patroni role on each VM: a reset hits that VM alone."""
        return "/dev/watchdog"

    def backup_repository(self) -> BackupRepository:
        """The private container ``backup.container`` of the stack's storage account: its blob endpoint
        as the deployment reported it (``<account>.blob.core.windows.net``, HTTPS on 443, host-style
        URLs, the system's CA store, DNS) and the account's key, read from the state directory where
        provision stored it (or, when none is stored for this account, from ARM, then stored).
        TargetError when the spec turns backups off or the outputs name no account (redeploy)."""
        if not self.spec.backup.enabled:
            raise TargetError("the spec turns backups off (backup.enabled: false): there is no backup repository")
        account, _ = backup.endpoint(self.outputs)
        key = backup.stored_key(self.state.dir, account) or \
            backup.fetch_key(self._az, self.resource_group, account, self.state.dir)
        return backup.repository(self.outputs, self.spec.backup.container, key)

    @property
    def subnet_id(self) -> str:
        """The resource id of the nodes' subnet (``nodes`` of the deployment's virtual network)."""
        return (f"/subscriptions/{self._subscription_id}/resourceGroups/{self.resource_group}/providers/"
                f"Microsoft.Network/virtualNetworks/{self.outputs['vnetName']}/subnets/{SUBNET}")

    @contextlib.contextmanager
    def repository_access(self, reader: Target, node: str) -> Iterator[BackupRepository]:
        """The storage account's network rules admit the reader's subnet (``backup.subnet_admitted``);
        the repository is the one the nodes of this stack reach (DNS, the system's CA store)."""
        if not isinstance(reader, AzureTarget):
            raise TargetError(f"a stack on target {reader.name} cannot read an Azure stack's repository")
        self._guard("open the backup repository to another stack's subnet")
        repo = self.backup_repository()
        with backup.subnet_admitted(self._az, self.resource_group, repo.account, reader.subnet_id):
            yield repo

    def attach(self) -> None:
        """Stage 3: redeploy ``main.bicep`` with ``joinBackendPool=true`` (the NICs' ip configurations then
        reference the backend pool), with what-if first and the provision's tags (expiry unchanged),
        then wait until the load balancer reports every node healthy. Idempotent: a second run is a
        no-change deployment. Only the spec's nodes are deployed, so a node ``detach`` took out is
        never put back (its NIC is not in the template; provision deletes it)."""
        self._require_allowed()
        self._deploy(self._compile(bicep.MAIN_BICEP), join_pool=True, tags=self.state.data.get("tags") or self._tags())
        self.wait_pool_healthy()

    def detach(self, node: str) -> None:
        """Scale in: the node's NIC no longer references the backend pool (``scale_in.leave_pool``: a
        NIC update that keeps its inbound NAT rule, so SSH to it still works while it is retired),
        then wait until the load balancer's pool (``backend_pool``) no longer lists it. Idempotent:
        a NIC already out is not written. Refused outside our resource group."""
        nic = self._node(node)["nicName"]
        self._guard(f"take {node} out of the backend pool")
        lb, pool = self.outputs["loadBalancerName"], self.outputs["backendPoolName"]
        pool_id = (f"/subscriptions/{self._subscription_id}/resourceGroups/{self.resource_group}/providers/"
                   f"Microsoft.Network/loadBalancers/{lb}/backendAddressPools/{pool}")
        if scale_in.leave_pool(self._az, self.resource_group, nic, pool_id, node):
            log.info("%s: NIC %s no longer references backend pool %s of %s", node, nic, pool, lb)
        wait_until(f"backend pool {pool} of {lb} without {node}", self.backend_pool,
                   lambda members: node not in {m.node for m in members}, timeout=self.budgets.lb_settle_s)

    # ----- read-backs -----

    def security_rules(self) -> list[RuleInForce]:
        """The NSG's own rules (scope ``nsg``), then each node's effective rules (scope = node); sources
        normalised by ``convert.prefix``, so both compare with ``resolve_source`` (``readbacks``)."""
        return readbacks.security_rules(self._az, self.resource_group, self.outputs)

    def resolve_source(self, source: str) -> tuple[str, ...]:
        """The NSG's form of a spec source (``parameters.resolve_source``), normalised as read back:
        ``Any`` -> ``*``, ``Management`` -> ``azure.admin_cidr``, service tags stay, CIDRs normal."""
        try:
            return (convert.prefix(nsg_source(self.spec, source)),)
        except SpecError as exc:
            raise TargetError(str(exc)) from None

    def backend_pool(self) -> list[PoolMember]:
        """The pool's NICs mapped to nodes, healthy when ``Up`` on every rule (``readbacks``)."""
        return readbacks.backend_pool(self._az, self.resource_group, self.outputs, self.spec)

    def frontend(self) -> tuple[str, int]:
        """The public frontend address (deployment output) and ``ports.haproxy_primary``."""
        return self.outputs["frontendIp"], self.spec.ports.haproxy_primary

    def tls_names(self) -> list[str]:
        """The frontend's public address and its DNS name (``<stack>-<suffix>.<region>.cloudapp.azure.com``),
        as ARM reported them for the last deployment (outputs ``frontendIp`` and ``frontendFqdn``).
        TargetError when the recorded outputs predate the DNS name: redeploy with ``--force provision``."""
        fqdn = self.outputs.get("frontendFqdn")
        if not fqdn:
            raise TargetError(f"stack {self.spec.name} has no frontendFqdn in its deployment outputs (provisioned "
                              "before the frontend had a DNS name): run `deployer up --force provision` to redeploy it")
        return [self.frontend()[0], fqdn]

    def vantage(self) -> list[str]:
        """``[]``: this machine is outside the VNet, where clients are."""
        return []

    def _probe_from_internet(self, address: str, port: int, timeout: float) -> dict:
        return tcp(address, port, timeout)

    def _probe_from_node(self, node: str, address: str, port: int, timeout: float) -> dict:
        """``nc -z -w`` over SSH on the node (``ssh.probe_from``)."""
        return ssh.probe_from(self.host(node), address, port, timeout, self._run)

    def patroni_url(self, node: str) -> str:
        """``https://127.0.0.1:<port>``: an SSH tunnel through the node's NAT port to its Patroni API
        (HTTPS; the node certificate names 127.0.0.1, so it verifies against ``ca_file`` through the
        tunnel), started on first use and restarted when it died; ``close`` ends them. When the
        tunnel cannot open (node down), the URL points at a closed port, so a request fails fast."""
        return self._tunnels.url(self.host(node), self.spec.ports.patroni)

    def close(self) -> None:
        """End the SSH tunnels this target started (only those)."""
        self._tunnels.close()

    # ----- faults -----

    def crash_vm(self, node: str) -> None:
        """Power the node's VM off without a guest shutdown (``skip_shutdown=True``): its processes die
        at once, its disks stay. Heal with ``start_vm``. Refused outside our resource group."""
        vm = self._node(node)["vmName"]
        self._guard(f"power off VM {vm}")
        nsg_faults.power_off(self._az, self.resource_group, vm, node)
        self._mark("stopped", node, True)
        log.info("%s: VM %s powered off without shutdown", node, vm)

    def start_vm(self, node: str) -> None:
        """Start the node's VM again (a no-op on a running VM); returns once its sshd answers."""
        vm = self._node(node)["vmName"]
        self._guard(f"start VM {vm}")
        nsg_faults.start(self._az, self.resource_group, vm, node)
        self.wait_for_ssh(node)
        self._mark("stopped", node, False)
        log.info("%s: VM %s started, SSH answers", node, vm)

    def _rule_names(self) -> list[str]:
        return [r.name for r in self.spec.security_rules]

    def isolate(self, node: str) -> None:
        """Deny all traffic to and from the node's private address with two NSG rules at the lowest
        free reserved priorities (per direction), and ``flushConnection`` on, so established flows
        are cut too (``nsg_faults``). Idempotent. Caveat: a spec rule with a lower priority would
        pass first; spec priorities start above the reserved range. A redeploy removes these rules.
        Refused, writing nothing, when the NSG as read lacks one of the spec's rules."""
        address = self._node(node)["privateIp"]
        self._guard(f"isolate {node}")
        nsg = self.outputs["nsgName"]
        if nsg_faults.isolate(self._az, self.resource_group, nsg, node, address, self._rule_names()):
            log.info("%s: isolated (%s denied both ways, flows flushed)", node, address)
        self._mark("isolated", node, True)

    def heal(self, node: str) -> None:
        """Remove exactly the node's isolation rules (flows are re-evaluated again); a no-op, with no
        write, when there are none. Refused, writing nothing, when the NSG lacks a spec rule."""
        self._node(node)
        self._guard(f"heal {node}")
        if nsg_faults.heal(self._az, self.resource_group, self.outputs["nsgName"], node, self._rule_names()):
            log.info("%s: isolation rules removed", node)
        self._mark("isolated", node, False)

    # ----- teardown -----

    def teardown(self) -> None:
        """Delete ``rg-<stack>`` and wait for it, then the backup account's stored key (the account went
        with the group); nothing to do when it is already gone. Refused when the group's tags do not
        show the deployer created it for this stack."""
        self._require_allowed(admin_cidr=False)
        group = self._group()
        if group is None:
            log.info("resource group %s is already gone", self.resource_group)
            return
        self._refuse_foreign(group, f"delete resource group {self.resource_group}")
        deployment.delete_group(self._az, self.resource_group)
        (self.state.dir / backup.KEY_FILE).unlink(missing_ok=True)
        self._record(isolated=[], stopped=[])
        log.info("resource group %s deleted", self.resource_group)

    def leftovers(self) -> list[str]:
        """The resource group, if it still exists, and every resource still listed in it, one line
        each (``<type> <name>``); empty when the group is gone (404)."""
        group = self._group()
        return [] if group is None else deployment.leftovers(self._az, self.resource_group, group)
