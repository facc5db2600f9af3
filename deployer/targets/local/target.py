"""The ``local`` target: the whole stack on this machine (see the modules beside this one)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deployer.inventory import image_packages
from deployer.secrets import Secrets
from deployer.spec import SpecError, check_stack_name
from deployer.targets.base import BackupRepository, HostAccess, MissingPrerequisite, PoolMember, RuleInForce, Target, TargetError
from deployer.targets.local import lb, network, nsg, storage
from deployer.targets.local.cmd import run
from deployer.targets.local.image import ensure_image, prune_images
from deployer.targets.local.network import Layout
from deployer.targets.local.vm import CGROUP_ROOT, HIERARCHIES, VM
from deployer.targets.local.wheels import wheelhouse
from deployer.wait import wait_until

log = logging.getLogger("deployer.local")
IMAGE_CACHE = Path(os.environ.get("PGHA_IMAGE_CACHE", "/var/cache/pgha/images"))
#: The state directory's subdirectories holding what runs of a stack (a process started from one is the stack's).
RUN_DIRS = ("vms", "lb", "storage")
TOOLS = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "nft": "nftables",
         "ip": "iproute2", "ssh": "openssh-client", "ssh-keygen": "openssh-client"}


class LocalTarget(Target):
    """VMs are systemd-nspawn containers in network namespaces; the NSG is nftables; the LB is HAProxy."""

    name = "local"

    def __init__(self, spec, state):
        super().__init__(spec, state)
        self.layout = Layout(spec, state.name)
        self.lb_dir = state.dir / "lb"
        self.storage = storage.Storage(self.layout, state.dir / "storage", self.pki, spec.backup.container)

    # ----- helpers -----

    def vm(self, node: str) -> VM:
        image = Path(self.state.data.get("image", "/nonexistent"))
        return VM(self.state.name, node, self.layout.node_ns(node), image, self.state.dir / "vms" / node)

    def _vms(self) -> list[VM]:
        return [self.vm(n.name) for n in self.spec.nodes]

    def load_nft(self, script: str) -> None:
        """Apply an nftables script in the subnet's namespace, where the NSG lives (atomically)."""
        run(["nft", "-f", "-"], netns=self.layout.vnet, input=script)

    # ----- stages -----

    def preflight(self) -> None:
        problems = []
        if os.geteuid() != 0:
            problems.append("run as root (namespaces, mounts and containers need it)")
        missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
        if missing:
            problems.append(f"install the Debian packages {' '.join(missing)} (`make deps` does)")
        if len(self.state.name) > 10:
            problems.append(f"stack name {self.state.name!r} is too long for interface names (10 characters at most)")
        if self.spec.backup.enabled:
            problems += storage.missing()
        if "overlay" not in Path("/proc/filesystems").read_text():
            problems.append("the kernel has no overlayfs")
        need = self.spec.local.min_free_disk_gib
        for where in (self.state.dir.parent, IMAGE_CACHE):
            while not where.exists():  # measure where it will be created, creating nothing
                where = where.parent
            free = shutil.disk_usage(where).free / 2**30
            if free < need:
                problems.append(f"{where} has {free:.1f} GiB free, the stack needs {need:g} GiB")
        if problems:
            raise MissingPrerequisite("the local target cannot start: " + "; ".join(problems) + ". Nothing was created.")

    def is_up(self) -> bool:
        return (set(self.layout.namespaces) <= set(network.existing_namespaces(self.state.name, self._stacks()))
                and all(vm.running() for vm in self._vms()) and (self.lb_dir / "haproxy.pid").exists()
                and (not self.spec.backup.enabled or self.storage.pid() is not None))

    def provision(self) -> None:
        """Stage 1, converging in place. A stack on record (its provision once succeeded) keeps its
        VMs, their disks and its image: the network gains what it lacks, the NSG is replaced in one
        transaction, the load balancer reloads only if its configuration changed (keeping its
        members), VMs not running are started on their own disks, VMs of nodes the spec no longer
        has are removed. Only leftovers of a stack that was never deployed are torn down first."""
        recorded = self.state.done("provision")
        if not recorded and self._of(self.state.name, HostView.read()):
            log.info("A previous stack named %s left resources behind and was never deployed; tearing them down "
                     "first.", self.state.name)
            self.teardown()
        image = self._image(recorded)
        existing = network.existing_namespaces(self.state.name, self._stacks())
        plugged = network.converge(self.layout, existing)
        if plugged:
            log.info("Network: namespaces and links created for %s.", ", ".join(plugged))
        log.info("Loading the NSG (%d rules, default deny) into nftables in %s, in one transaction.",
                 len(self.spec.security_rules), self.layout.vnet)
        self.load_nft(nsg.render(self.layout) + (nsg.flush_fault_tables() if self.layout.vnet in existing
                                                 else nsg.render_fault_tables()))
        self._converge_lb(image)
        if self.spec.backup.enabled:
            self.storage.converge(log)
        for gone in sorted({vm.node for vm in self._all_vm_dirs()} - {n.name for n in self.spec.nodes}):
            self._remove_vm(gone)
        secrets, known = Secrets(self.state.dir), []
        for vm in self._vms():
            vm.mount()
            key = vm.personalise(self.spec.admin_user, secrets.ssh_public_key)
            known.append(f"{self.spec.node(vm.node).address} {key}")
            network.set_node_link(self.layout, vm.node, up=True)  # a crashed VM's link went dark
            if not vm.launcher_pid():
                log.info("Starting VM %s on its own disk.", vm.node)
                vm.start()
        (self.state.dir / "known_hosts").write_text("\n".join(known) + "\n")
        self.state.data.update(isolated=[], stopped=[])
        self.state.save()
        log.info("Waiting for the SSH daemons of %d VMs.", len(known))
        for node in self.spec.nodes:
            self.wait_for_ssh(node.name)

    def _image(self, recorded: bool) -> Path:
        """The image the VMs run on: a recorded stack's own (its VMs' lower layer), else the spec's
        (baked if missing), recorded in the state."""
        kept = Path(self.state.data.get("image", "/nonexistent"))
        if recorded and kept.is_dir():
            return kept
        debs, pips = image_packages(self.spec)
        image = ensure_image(debs, pips, admin_user=self.spec.admin_user, cache_root=IMAGE_CACHE,
                             progress=lambda msg: log.info("%s", msg))
        self.state.data.update(image=str(image))
        self.state.save()
        for old in prune_images(image, IMAGE_CACHE):
            log.info("Removed the unused cached image %s.", old.name)
        return image

    def _converge_lb(self, image: Path) -> None:
        """Start the load balancer with an empty pool, or reload it (seamlessly, keeping the members it
        reports) when its rendered configuration changed; nothing when it runs as rendered."""
        self.lb_dir.mkdir(parents=True, exist_ok=True)
        running = lb.running_pids(self.lb_dir)
        members = {m.node: m.address for m in self.backend_pool()} if running else {}
        config = self.lb_dir / "haproxy.cfg"
        text = lb.render_config(self.spec, str(self.layout.frontend), self.lb_dir, members)
        if running and config.exists() and config.read_text() == text:
            return
        config.write_text(text)
        if running:
            log.info("Reloading the load balancer with its new settings, keeping its members %s.", ", ".join(members))
        else:
            log.info("Starting the load balancer (HAProxy, TCP mode) on %s with an empty backend pool.", self.layout.frontend)
        run(lb.command(image, config, running), netns=self.layout.lb)
        wait_until("the load balancer's admin socket to answer", lambda: lb.admin(self.lb_dir, "show info"), timeout=10)

    def _remove_vm(self, node: str) -> None:
        """A VM whose node left the spec: stopped, unmounted, its namespace and disk deleted."""
        log.info("Removing VM %s (no longer in the spec): stopping it and deleting its disk.", node)
        vm = self.vm(node)
        vm.stop()
        vm.unmount()
        vm.remove_cgroups()
        network.unplug(self.layout, node)
        shutil.rmtree(vm.dir, ignore_errors=True)

    def hosts(self) -> list[HostAccess]:
        return [HostAccess(node=n.name, address=str(n.address), ssh_host=str(n.address), ssh_port=self.spec.ports.ssh,
                           user=self.spec.admin_user, key_file=self.state.dir / "id_ed25519",
                           known_hosts=self.state.dir / "known_hosts") for n in self.spec.nodes]

    def ansible_vars(self) -> dict:
        """No package index (a release the image lacks comes from the host's wheelhouse), no watchdog."""
        return {"common_apt_update_cache": False, "patroni_watchdog_mode": "off",
                "patroni_wheelhouse": str(wheelhouse(image_packages(self.spec)[1]))}

    def renew_endpoint_certificates(self) -> None:
        """The blob endpoint's certificate, re-issued by the current CA, and Azurite restarted with it."""
        if self.spec.backup.enabled:
            self.storage.converge(log)

    def backup_repository(self) -> BackupRepository:
        """Azurite in the ``storage`` namespace (``storage.Storage``)."""
        if not self.spec.backup.enabled:
            raise TargetError("the spec turns backups off (backup.enabled: false): there is no backup repository")
        return self.storage.repository()

    @contextlib.contextmanager
    def repository_access(self, reader: Target, node: str) -> Iterator[BackupRepository]:
        """Through an SSH reverse forward from the reader's node (``storage.Storage.forwarded_to``)."""
        if not isinstance(reader, LocalTarget):
            raise TargetError(f"a stack on target {reader.name} cannot read a local stack's repository")
        self.backup_repository()
        with self.storage.forwarded_to(reader.host(node)) as repo:
            yield repo

    def attach(self) -> None:
        present = {m.node for m in self.backend_pool()}
        for node in self.spec.nodes:
            if node.name not in present:
                log.info("Adding %s (%s) to the load balancer's backend pool.", node.name, node.address)
                lb.add_member(self.spec, self.lb_dir, node.name, str(node.address))
        self.wait_pool_healthy()

    def detach(self, node: str) -> None:
        log.info("Taking %s out of the load balancer's backend pool.", node)
        lb.remove_member(self.spec, self.lb_dir, node)

    # ----- read-backs -----

    def security_rules(self) -> list[RuleInForce]:
        """Every rule of the ``vnet`` namespace's ruleset (see ``nsg.parse``)."""
        ruleset = run(["nft", "-j", "list", "ruleset"], netns=self.layout.vnet).stdout
        return nsg.parse(ruleset, {r.name for r in self.spec.security_rules})

    def resolve_source(self, source: str) -> tuple[str, ...]:
        return nsg.resolve_source(self.layout, source)

    def backend_pool(self) -> list[PoolMember]:
        return lb.members(self.spec, self.lb_dir)

    def lb_connections(self) -> dict[str, int]:
        """Each member's ``stot`` in the load balancer's ``show stat`` (``lb.connections``)."""
        return lb.connections(self.spec, self.lb_dir)

    def frontend(self) -> tuple[str, int]:
        return str(self.layout.frontend), self.spec.ports.haproxy_primary

    def vantage(self) -> list[str]:
        """The ``client`` namespace, routed to the frontend through ``vnet`` like the internet."""
        return ["ip", "netns", "exec", self.layout.client]

    def neighbour_vantage(self) -> tuple[str, list[str]]:
        """The ``neighbour`` namespace: an address of the vnet outside the subnet, routed through
        ``vnet`` (its NSG applies as to any host of the network), with nothing of the stack in it."""
        return str(self.layout.neighbour_link.outer), ["ip", "netns", "exec", self.layout.neighbour]

    def _probe_in(self, netns: str, address: str, port: int, timeout: float) -> dict:
        argv = [sys.executable, "-m", "deployer.netprobe", "tcp", address, str(port), str(timeout)]
        return json.loads(run(argv, netns=netns, timeout=timeout + 10).stdout)

    def _probe_from_internet(self, address: str, port: int, timeout: float) -> dict:
        return self._probe_in(self.layout.client, address, port, timeout)

    def _probe_from_node(self, node: str, address: str, port: int, timeout: float) -> dict:
        """From the node's network namespace: the node's own view, even when its services are down."""
        return self._probe_in(self.layout.node_ns(node), address, port, timeout)

    # ----- faults -----

    def crash_vm(self, node: str) -> None:
        """SIGKILL to the container's init, and its bridge port goes down (a black hole to peers)."""
        log.info("Crashing %s: SIGKILL to its init, and its link goes dark.", node)
        network.set_node_link(self.layout, node, up=False)
        vm = self.vm(node)
        vm.kill()
        wait_until(f"{node}'s crashed container to be gone", lambda: not vm.launcher_pid(), timeout=15)
        self._mark("stopped", node, True)

    def start_vm(self, node: str) -> None:
        vm = self.vm(node)
        network.set_node_link(self.layout, node, up=True)
        if not vm.launcher_pid():
            log.info("Starting %s again on its own disk.", node)
            vm.start()
        self.wait_for_ssh(node)
        self._mark("stopped", node, False)

    def _fault_set(self, verb: str, node: str) -> None:
        address = self.address_of(node)
        for family in ("inet", "bridge"):
            run(["nft", verb, "element", family, nsg.FAULT_TABLE, "isolated", f"{{ {address} }}"],
                netns=self.layout.vnet, check=verb == "add")

    def isolate(self, node: str) -> None:
        """The node's address joins the ``isolated`` set of the fault tables (``add`` is idempotent)."""
        log.info("Isolating %s: every packet to or from it is dropped, established flows included.", node)
        self._fault_set("add", node)
        self._mark("isolated", node, True)

    def heal(self, node: str) -> None:
        if node in self.faulted("isolated"):
            log.info("Healing %s: its packets flow again.", node)
        self._fault_set("delete", node)
        self._mark("isolated", node, False)

    # ----- teardown -----

    def teardown(self) -> None:
        lb.stop(self.lb_dir)
        self.storage.stop()
        vms = self._all_vm_dirs()
        running = [vm for vm in vms if vm.launcher_pid()]
        if running:
            log.info("Stopping VMs %s (poweroff, SIGKILL after 30 s).", ", ".join(vm.node for vm in running))
            with ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(lambda vm: vm.stop(), running))
        for vm in vms:
            vm.unmount()
            vm.remove_cgroups()
        names = network.existing_namespaces(self.state.name, self._stacks())
        for ns in names:
            for pid in network.ns_pids(ns):
                log.info("Killing process %d left in namespace %s.", pid, ns)
                run(["kill", "-9", str(pid)], check=False)
        network.destroy(self.layout, names)
        for sub in RUN_DIRS:
            shutil.rmtree(self.state.dir / sub, ignore_errors=True)

    def _stacks(self) -> set[str]:
        """Every stack with a state directory on this host."""
        root = self.state.dir.parent
        return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()

    def _all_vm_dirs(self) -> list[VM]:
        """Every VM this stack may have: the spec's nodes and any other directory left on disk."""
        names = {n.name for n in self.spec.nodes}
        vms_dir = self.state.dir / "vms"
        if vms_dir.is_dir():
            names |= {p.name for p in vms_dir.iterdir()}
        return [self.vm(n) for n in sorted(names)]

    def leftovers(self) -> list[str]:
        """What ``_of`` finds of this stack, the host tables of the project (``pgha_``), and the same
        for every stack whose name this version refuses (created by an older one): ``deployer down``
        cannot name such a stack, so every stack's teardown reports what is left of it. Only reads."""
        host = HostView.read()
        tables = [f"nftables table in the host namespace: {t}" for t in host.tables if "pgha_" in t]
        return self._of(self.state.name, host) + tables + self._orphans(host)

    def _of(self, stack: str, host: HostView, note: str = "") -> list[str]:
        """Everything of ``stack`` on this host: its namespaces and host interface (``<stack>-...``),
        mounts under its state dir, the processes started from it (VM launchers, the load balancer, the blob endpoint),
        its VM cgroups (``<stack>.<node>``)."""
        home, mgmt_if = self.state.dir.parent / stack, stack + Layout(self.spec, "").mgmt_if
        found = [f"network namespace {ns}" for ns in network.namespaces_of(stack, host.namespaces, self._stacks())]
        found += [f"host interface {link}" for link in host.links if link == mgmt_if]
        found += [f"mount {m}" for m in host.mounts if m.startswith(f"{home}/")]
        found += [f"process {pid} ({cmd})" for pid, cmd in host.processes
                  if any(f"{home}/{sub}/" in cmd for sub in RUN_DIRS)]
        for h in HIERARCHIES:
            base = CGROUP_ROOT / h
            if base.is_dir():
                found += [f"cgroup {p}" for p in base.rglob(f"{stack}.*") if p.is_dir()]
        return [line + note for line in found]

    def _orphans(self, host: HostView) -> list[str]:
        """``_of`` every stack named on this host (its state dir, a namespace or host interface of the
        layout's shape, a mount or process under the state root) whose name ``check_stack_name``
        refuses."""
        root, shape = self.state.dir.parent, Layout(self.spec, "")
        named = self._stacks()
        named |= {ns.removesuffix(end) for ns in host.namespaces
                  for end in (shape.vnet, shape.lb, shape.client, shape.neighbour, shape.storage)
                  if ns.endswith(end)}
        named |= {link.removesuffix(shape.mgmt_if) for link in host.links if link.endswith(shape.mgmt_if)}
        named |= {m.removeprefix(f"{root}/").split("/")[0] for m in host.mounts if m.startswith(f"{root}/")}
        named |= {found for _, cmd in host.processes
                  for found in re.findall(rf"{re.escape(str(root))}/([^/\s]+)/(?:{'|'.join(RUN_DIRS)})/", cmd)}
        refused = sorted(name for name in named if name and name != self.state.name and _refused(name))
        return [line for name in refused for line in self._of(
            name, host, f" (of stack {name!r}, a name this version refuses: left by an older one; remove it by hand)")]


@dataclasses.dataclass(frozen=True)
class HostView:
    """What ``leftovers`` reads of the host, once: named network namespaces, host interfaces, mount
    points, processes (pid, command line) and the host namespace's nftables tables."""

    namespaces: list[str]
    links: list[str]
    mounts: list[str]
    processes: list[tuple[int, str]]
    tables: list[str]

    @classmethod
    def read(cls) -> HostView:
        def lines(*argv: str, check: bool = True) -> list[str]:
            return run(list(argv), check=check).stdout.splitlines()

        return cls(namespaces=[line.split()[0] for line in lines("ip", "netns", "list") if line.split()],
                   links=[line.split(": ")[1].split("@")[0] for line in lines("ip", "-o", "link", "show")
                          if ": " in line],
                   mounts=lines("findmnt", "-rn", "-o", "TARGET"), processes=_processes(),
                   tables=lines("nft", "list", "tables", check=False))


def _refused(stack: str) -> bool:
    try:
        check_stack_name(stack)
    except SpecError:
        return True
    return False


def _processes() -> list[tuple[int, str]]:
    """Every process on the host: pid and command line (arguments joined by spaces)."""
    found = []
    for proc in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        found.append((int(proc.name), argv.replace(b"\0", b" ").decode(errors="replace").strip()))
    return found
