"""The one mapping from the stack spec to Ansible: inventory, role variables, extravars, image packages.

Every value a role needs comes from here, derived from the spec (addresses, ports, Patroni timing,
HAProxy checks) or from the target (``Target.ansible_vars()``: what differs between targets, such
as whether apt may refresh its cache). Passwords never enter the inventory: ``render_extravars``
returns them separately, for a file the deployer writes with mode 0600 and deletes after the run.

Role variables are named ``<role>_<name>`` and declared, with a comment, in
``ansible/roles/<role>/defaults/main.yml``; this module refuses to emit a variable no role declares.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jinja2
import yaml

from deployer.paths import ANSIBLE_DIR
from deployer.secrets import Secrets
from deployer.spec import StackSpec
from deployer.targets.access import HostAccess
from deployer.targets.base import BackupRepository
#: The roles, in the order site.yml applies them.
ROLES = ("common", "etcd", "postgresql", "patroni", "haproxy", "pgbackrest")
#: Secret name (deployer.secrets.NAMES) -> the extravar carrying it.
PASSWORD_VARS = {
    "superuser": "patroni_superuser_password",
    "replication": "patroni_replication_password",
    "rewind": "patroni_rewind_password",
    "rest_api": "patroni_restapi_password",
    "app": "patroni_app_password",
}
WATCHDOG_MODES = ("off", "automatic", "required")
#: Patroni's configuration on every node (the patroni role writes it).
PATRONI_CONFIG = "/etc/patroni/patroni.yml"
#: Where the common role installs the stack's TLS material on a node; every role reads it there.
TLS_ON_NODE = {"ca": "/etc/pgha/tls/ca.crt", "cert": "/etc/pgha/tls/node.crt", "key": "/etc/pgha/tls/node.key"}


@functools.cache
def role_defaults(roles_dir: Path = ANSIBLE_DIR / "roles") -> dict[str, dict[str, Any]]:
    """Each role's ``defaults/main.yml`` as parsed YAML (templates unrendered), by role name."""
    defaults = {}
    for role in ROLES:
        path = roles_dir / role / "defaults" / "main.yml"
        defaults[role] = yaml.safe_load(path.read_text()) or {}
    return defaults


def known_variables() -> set[str]:
    """Every variable some role declares in its defaults: the only role variables we may set."""
    return {name for values in role_defaults().values() for name in values}


def _members(spec: StackSpec) -> list[dict[str, str]]:
    return [{"name": node.name, "address": str(node.address)} for node in spec.nodes]


def _spec_vars(spec: StackSpec) -> dict[str, Any]:
    """Role variables shared by every host, all derived from the spec."""
    members = _members(spec)
    ports = spec.ports
    return {
        # common
        "common_hosts": members,
        "common_tls_dir": str(Path(TLS_ON_NODE["ca"]).parent),
        **{f"{role}_tls_{kind}_file": path for role in ("etcd", "patroni") for kind, path in TLS_ON_NODE.items()},
        "haproxy_tls_ca_file": TLS_ON_NODE["ca"],
        # etcd
        "etcd_members": members,
        "etcd_client_port": ports.etcd_client,
        "etcd_peer_port": ports.etcd_peer,
        "etcd_cluster_token": spec.name,
        # postgresql
        "postgresql_version": spec.postgres.version,
        # patroni
        "patroni_version": spec.patroni.version,
        "patroni_scope": spec.patroni.scope,
        "patroni_members": members,
        "patroni_bootstrap_node": spec.nodes[0].name,
        "patroni_etcd_hosts": [f"{m['address']}:{ports.etcd_client}" for m in members],
        "patroni_restapi_port": ports.patroni,
        "patroni_postgresql_port": ports.postgres,
        "patroni_postgresql_version": spec.postgres.version,
        "patroni_ttl": spec.patroni.ttl,
        "patroni_loop_wait": spec.patroni.loop_wait,
        "patroni_retry_timeout": spec.patroni.retry_timeout,
        "patroni_synchronous_mode": spec.patroni.synchronous_mode,
        "patroni_failsafe_mode": spec.patroni.failsafe_mode,
        "patroni_etcd_leader_elsewhere": spec.patroni.etcd_leader_elsewhere,
        "patroni_maximum_lag_on_failover": spec.patroni.maximum_lag_on_failover,
        "patroni_pgbackrest_stanza": spec.stanza if spec.backup.enabled else "",
        "patroni_postgresql_parameters": spec.postgres_settings(),
        "patroni_hba_cidr": str(spec.network.subnet_cidr),
        # haproxy
        "haproxy_servers": members,
        "haproxy_primary_port": ports.haproxy_primary,
        "haproxy_replicas_port": ports.haproxy_replicas,
        "haproxy_health_port": ports.haproxy_health,
        "haproxy_postgres_port": ports.postgres,
        "haproxy_patroni_port": ports.patroni,
        "haproxy_check_inter_ms": spec.haproxy.check_inter_ms,
        "haproxy_check_fastinter_ms": spec.haproxy.fastinter_ms,
        "haproxy_check_downinter_ms": spec.haproxy.downinter_ms,
        "haproxy_check_fall": spec.haproxy.check_fall,
        "haproxy_check_rise": spec.haproxy.check_rise,
        "haproxy_server_maxconn": max(1, spec.postgres.max_connections - 10),
        # pgbackrest: the same data directory, port and binaries as Patroni's
        "patroni_postgresql_data_dir": data_dir(spec),
        "pgbackrest_pg_path": data_dir(spec),
        "pgbackrest_pg_port": ports.postgres,
        "pgbackrest_postgresql_bin_dir": f"/usr/lib/postgresql/{spec.postgres.version}/bin",
        "pgbackrest_enabled": spec.backup.enabled,
        "pgbackrest_stanza": spec.stanza,
        "pgbackrest_retention_full": spec.backup.retention_full,
        "pgbackrest_retention_diff": spec.backup.retention_diff,
        "pgbackrest_full_every_h": spec.backup.full_every_h,
        "pgbackrest_diff_every_h": spec.backup.diff_every_h,
        "pgbackrest_check_every_min": spec.backup.check_every_min,
    }


def data_dir(spec: StackSpec) -> str:
    """Every node's PostgreSQL data directory (Patroni runs it, pgBackRest backs it up and restores it)."""
    return f"/var/lib/postgresql/{spec.postgres.version}/{spec.patroni.scope}"


def repository_vars(repo: BackupRepository | None) -> dict[str, Any]:
    """The pgbackrest role's variables for the target's repository (``Target.backup_repository``),
    the key excepted (``render_extravars`` carries it); none without a repository."""
    if repo is None:
        return {}
    return {f"pgbackrest_repo_{f.name}": getattr(repo, f.name) for f in dataclasses.fields(repo) if f.name != "key"}


def _node_vars(name: str, address: str) -> dict[str, str]:
    """Per-host role variables: who this node is in each role."""
    return {
        "etcd_node_name": name,
        "etcd_node_address": address,
        "patroni_node_name": name,
        "patroni_node_address": address,
    }


def _target_role_vars(target_vars: dict, spec_vars: dict) -> dict[str, Any]:
    """Turn the target's variables into role variables; refuse anything unknown or spec-owned.

    Accepted keys: ``apt_update_cache`` (bool, fanned out to every role's ``<role>_apt_update_cache``;
    a single ``<role>_apt_update_cache`` is taken as the target's one decision too, and all given
    must agree), any variable a role declares that the spec does not already set, and
    ``ansible_*`` connection variables.
    """
    known = known_variables()
    out: dict[str, Any] = {}
    cache_decisions = {}
    for key, value in target_vars.items():
        if key == "apt_update_cache" or (key.endswith("_apt_update_cache") and key in known):
            cache_decisions[key] = bool(value)
        elif key.startswith("ansible_"):
            out[key] = value
        elif key not in known:
            raise ValueError(f"target variable {key!r} is not a variable of any role in {ANSIBLE_DIR / 'roles'}")
        elif key in spec_vars:
            raise ValueError(f"target variable {key!r} would override a value the spec sets ({spec_vars[key]!r})")
        else:
            out[key] = value
    if len(set(cache_decisions.values())) > 1:
        raise ValueError(f"target variables disagree on refreshing the apt cache: {cache_decisions}")
    if cache_decisions:
        update = next(iter(cache_decisions.values()))
        out.update({f"{role}_apt_update_cache": update for role in ROLES})
    mode = out.get("patroni_watchdog_mode", "off")
    if mode not in WATCHDOG_MODES:
        raise ValueError(f"patroni_watchdog_mode {mode!r} is not one of {', '.join(WATCHDOG_MODES)}")
    return out


def render_inventory(spec: StackSpec, hosts: list[HostAccess], target_vars: dict, tls_source: Path | None = None) -> dict:
    """The ansible-runner inventory for ``site.yml``: one host per node, every role variable.

    ``hosts`` must hold exactly the spec's nodes (as ``Target.hosts()`` returns them) with the
    spec's addresses; ``target_vars`` is ``Target.ansible_vars()`` (see ``_target_role_vars`` for
    what it may contain). Host entries carry the SSH connection (``ansible_host``, ``ansible_port``,
    ``ansible_user``, ``ansible_ssh_private_key_file``, ``ansible_ssh_common_args``) and the node's
    identity in each role; ``all.vars`` carries everything derived from the spec plus the target's
    variables. No password is in here: see ``render_extravars``. ``tls_source`` is the stack's PKI
    directory on the control machine (``deployer.pki.StackPKI.dir``), which the common role copies from.
    Raises ValueError when hosts and spec disagree or a target variable is not a role variable.
    """
    by_name = {h.node: h for h in hosts}
    expected = [n.name for n in spec.nodes]
    if sorted(by_name) != sorted(expected) or len(by_name) != len(hosts):
        raise ValueError(f"hosts {sorted(h.node for h in hosts)} do not match the spec's nodes {expected}")
    inventory_hosts = {}
    for node in spec.nodes:
        host = by_name[node.name]
        if host.address != str(node.address):
            raise ValueError(f"host {node.name} has address {host.address}, the spec says {node.address}")
        inventory_hosts[node.name] = {**host.ansible_vars(), **_node_vars(node.name, str(node.address))}
    spec_vars = _spec_vars(spec)
    unknown = sorted((set(spec_vars) | set(_node_vars("x", "x"))) - known_variables())
    if unknown:
        raise ValueError(f"the inventory sets {', '.join(unknown)}, which no role declares in its defaults")
    all_vars = {"ansible_become": True, **spec_vars, **_target_role_vars(target_vars, spec_vars),
                **({"common_tls_source_dir": str(tls_source)} if tls_source else {})}
    return {"all": {"hosts": inventory_hosts, "vars": all_vars}}


def render_extravars(secrets: Secrets, repo: BackupRepository | None = None) -> dict:
    """The secret variables: the passwords the patroni role needs, from the stack's secrets, and the
    repository's key (``pgbackrest_repo_key``) when there is a repository.

    Never log the result; the deployer hands it to ansible-runner as extravars (a mode 0600 file).
    """
    return {**{var: secrets[name] for name, var in PASSWORD_VARS.items()},
            **({"pgbackrest_repo_key": repo.key} if repo else {})}


def _render(value: Any, context: dict, env: jinja2.Environment) -> Any:
    """Render every string in ``value`` until it no longer changes (defaults refer to defaults)."""
    if isinstance(value, str):
        for _ in range(10):
            rendered = env.from_string(value).render(context)
            if rendered == value:
                return rendered
            value = rendered
        raise ValueError(f"template {value!r} does not settle")
    if isinstance(value, list):
        return [_render(v, context, env) for v in value]
    return value


def role_variables(role: str, spec: StackSpec, target_vars: dict) -> dict[str, Any]:
    """The variables ``role`` runs with for ``spec`` on a target whose ``Target.ansible_vars()`` are
    ``target_vars``: its defaults, overridden by the inventory's values, every string rendered as
    Ansible would (a default may refer to another, e.g. ``"{{ haproxy_check_inter_ms }}"``)."""
    spec_vars = _spec_vars(spec)
    context = {**role_defaults()[role], **spec_vars, **_target_role_vars(target_vars, spec_vars)}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return {name: _render(value, context, env) for name, value in context.items() if name.startswith(f"{role}_")}


def pgbackrest_conf(spec: StackSpec, repo: BackupRepository, stanza: str | None = None,
                    managed: str = "written by the deployer") -> str:
    """pgBackRest's configuration as the ``pgbackrest`` role renders it on ``spec``'s nodes for
    ``repo`` (its key included: the text is a secret), its stanza section named ``stanza`` (default:
    the spec's). ``deployer restore --into`` writes one for another stack's repository this way."""
    context = {**role_variables("pgbackrest", spec, {}), **repository_vars(repo), "pgbackrest_repo_key": repo.key,
               "pgbackrest_stanza": stanza or spec.stanza, "ansible_managed": managed}
    template = (ANSIBLE_DIR / "roles/pgbackrest/templates/pgbackrest.conf.j2").read_text()
    return jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True).from_string(template).render(context)


def image_packages(spec: StackSpec) -> tuple[list[str], list[str]]:
    """What an image must hold so the roles install nothing: (Debian packages, pip requirements).

    The Debian packages are every role's ``<role>_packages`` list, in role order without
    duplicates; the pip requirements are ``patroni_pip_requirements``. Both are the roles' own
    defaults rendered with the spec's values (e.g. ``patroni[etcd3]==<spec.patroni.version>``), so
    the local image bakes exactly what the roles would install.
    """
    defaults: dict[str, Any] = {}
    for values in role_defaults().values():
        defaults.update(values)
    context = {**defaults, **_spec_vars(spec)}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    debs: list[str] = []
    for role in ROLES:
        for package in _render(role_defaults()[role].get(f"{role}_packages", []), context, env):
            if package not in debs:
                debs.append(package)
    pips = _render(defaults["patroni_pip_requirements"], context, env)
    return debs, pips
