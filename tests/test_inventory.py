"""The spec -> Ansible mapping: inventory, extravars, image packages, and the configuration files the
roles' templates render from them (rendered by Ansible itself, locally, into a temporary directory).
"""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployer import inventory
from deployer.paths import ANSIBLE_DIR
from deployer.inventory import (PASSWORD_VARS, ROLES, image_packages, known_variables, render_extravars,
                                _spec_vars, render_inventory, role_defaults)
from deployer.secrets import NAMES
from deployer.spec import DEFAULT_SPEC, StackSpec, parse_spec
from deployer.targets.access import HostAccess

RAW = yaml.safe_load(DEFAULT_SPEC.read_text())
LOCAL_VARS = {"common_apt_update_cache": False, "patroni_watchdog_mode": "off"}


def spec_with(**changes) -> StackSpec:
    """The shipped spec with top-level sections updated (``patroni={"ttl": 40}`` merges into it)."""
    raw = copy.deepcopy(RAW)
    for key, value in changes.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    return parse_spec(raw)


def hosts_for(spec: StackSpec, tmp: Path = Path("/state"), jump: str | None = None) -> list[HostAccess]:
    return [HostAccess(node=n.name, address=str(n.address), ssh_host=str(n.address), ssh_port=spec.ports.ssh,
                       user=spec.admin_user, key_file=tmp / "id_ed25519", known_hosts=tmp / "known_hosts",
                       proxy_jump=jump) for n in spec.nodes]


class FakeSecrets:
    """Stands in for deployer.secrets.Secrets (which generates an SSH key on construction)."""

    def __init__(self):
        self.values = {name: f"secret-{name}-Zq9" for name in NAMES}

    def __getitem__(self, name):
        return self.values[name]


@pytest.fixture
def spec():
    return parse_spec(copy.deepcopy(RAW))


@pytest.fixture
def inv(spec):
    return render_inventory(spec, hosts_for(spec), dict(LOCAL_VARS))


# ----- inventory -----

def test_every_node_is_a_host_with_its_address_and_ssh_access(spec, inv):
    hosts = inv["all"]["hosts"]
    assert list(hosts) == [n.name for n in spec.nodes]
    for node in spec.nodes:
        host = hosts[node.name]
        assert host["ansible_host"] == str(node.address)
        assert host["ansible_port"] == spec.ports.ssh
        assert host["ansible_user"] == spec.admin_user
        assert host["ansible_ssh_private_key_file"] == "/state/id_ed25519"
        assert host["etcd_node_name"] == host["patroni_node_name"] == node.name
        assert host["etcd_node_address"] == host["patroni_node_address"] == str(node.address)
    assert inv["all"]["vars"]["ansible_become"] is True


def test_ssh_common_args_keep_every_option_but_key_and_port(spec):
    hosts = hosts_for(spec, jump="admin@bastion:2222")
    inv = render_inventory(spec, hosts, {})
    args = shlex.split(inv["all"]["hosts"]["pg1"]["ansible_ssh_common_args"])
    assert "-i" not in args and "-p" not in args
    assert "StrictHostKeyChecking=yes" in args and "UserKnownHostsFile=/state/known_hosts" in args
    assert args[args.index("-J") + 1] == "admin@bastion:2222"
    assert args == hosts[0].ssh_options()
    full = hosts[0].ssh_args()
    assert full[full.index("-i") + 1] == "/state/id_ed25519" and full[full.index("-p") + 1] == str(spec.ports.ssh)


def test_ports_and_patroni_settings_come_from_the_spec(spec, inv):
    v = inv["all"]["vars"]
    assert v["etcd_client_port"] == spec.ports.etcd_client and v["etcd_peer_port"] == spec.ports.etcd_peer
    assert v["patroni_restapi_port"] == spec.ports.patroni == v["haproxy_patroni_port"]
    assert v["patroni_postgresql_port"] == spec.ports.postgres == v["haproxy_postgres_port"]
    assert (v["haproxy_primary_port"], v["haproxy_replicas_port"], v["haproxy_health_port"]) == (
        spec.ports.haproxy_primary, spec.ports.haproxy_replicas, spec.ports.haproxy_health)
    p = spec.patroni
    assert (v["patroni_ttl"], v["patroni_loop_wait"], v["patroni_retry_timeout"]) == (p.ttl, p.loop_wait, p.retry_timeout)
    assert v["patroni_synchronous_mode"] is p.synchronous_mode
    assert v["patroni_maximum_lag_on_failover"] == p.maximum_lag_on_failover
    assert v["patroni_version"] == p.version and v["patroni_scope"] == p.scope
    assert v["patroni_postgresql_parameters"] == spec.postgres_settings() == {
        "max_connections": "100", "wal_sender_timeout": "10000", "archive_mode": "on",
        "archive_command": "/usr/local/bin/pgbackrest-archive-push pgha %p", "archive_timeout": "60"}
    assert v["patroni_etcd_hosts"] == [f"{n.address}:{spec.ports.etcd_client}" for n in spec.nodes]
    h = spec.haproxy
    assert (v["haproxy_check_inter_ms"], v["haproxy_check_fastinter_ms"], v["haproxy_check_downinter_ms"],
            v["haproxy_check_fall"], v["haproxy_check_rise"]) == (h.check_inter_ms, h.fastinter_ms, h.downinter_ms,
                                                                  h.check_fall, h.check_rise)
    members = [{"name": n.name, "address": str(n.address)} for n in spec.nodes]
    assert v["etcd_members"] == v["patroni_members"] == v["haproxy_servers"] == v["common_hosts"] == members


def test_hba_is_limited_to_the_subnet(spec, inv):
    assert inv["all"]["vars"]["patroni_hba_cidr"] == str(spec.network.subnet_cidr) == "10.0.1.0/24"


@pytest.mark.parametrize("changes, var, expected", [
    ({"patroni": {"ttl": 40}}, "patroni_ttl", 40),
    ({"patroni": {"wal_sender_timeout_ms": 5000}, "backup": {"enabled": False}}, "patroni_postgresql_parameters",
     {"max_connections": "100", "wal_sender_timeout": "5000"}),
    ({"postgres": {"parameters": {"work_mem": "8MB"}}, "backup": {"enabled": False}}, "patroni_postgresql_parameters",
     {"max_connections": "100", "wal_sender_timeout": "10000", "work_mem": "8192"}),
    ({"backup": {"archive_timeout_s": 30}}, "patroni_postgresql_parameters",
     {"max_connections": "100", "wal_sender_timeout": "10000", "archive_mode": "on", "archive_timeout": "30",
      "archive_command": "/usr/local/bin/pgbackrest-archive-push pgha %p"}),
    ({"ports": {"patroni": 8010}}, "haproxy_patroni_port", 8010),
    ({"haproxy": {"check_fall": 3}}, "haproxy_check_fall", 3),
    ({"haproxy": {"check_downinter_ms": 300}}, "haproxy_check_downinter_ms", 300),
    ({"haproxy": {"check_fastinter_ms": None}}, "haproxy_check_fastinter_ms", 1000),
    ({"network": {"vnet_cidr": "10.1.0.0/16", "subnet_cidr": "10.1.2.0/24"},
      "nodes": [{"name": f"db{i}", "address": f"10.1.2.{i + 10}"} for i in range(5)]},
     "patroni_hba_cidr", "10.1.2.0/24"),
])
def test_a_changed_spec_changes_the_output(inv, changes, var, expected):
    changed = spec_with(**changes)
    out = render_inventory(changed, hosts_for(changed), dict(LOCAL_VARS))
    assert out["all"]["vars"][var] == expected
    assert out != inv


def test_five_nodes_give_five_members(spec):
    nodes = [{"name": f"db{i}", "address": f"10.0.1.{i + 10}"} for i in range(5)]
    five = spec_with(nodes=nodes)
    out = render_inventory(five, hosts_for(five), {})
    assert list(out["all"]["hosts"]) == [n["name"] for n in nodes]
    assert [m["address"] for m in out["all"]["vars"]["etcd_members"]] == [n["address"] for n in nodes]


def test_no_secret_reaches_the_inventory(spec, inv):
    text = json.dumps(inv)
    for value in FakeSecrets().values.values():
        assert value not in text
    assert not any(key.endswith("_password") for key in inv["all"]["vars"])


def test_every_variable_the_inventory_sets_is_declared_by_a_role(inv):
    declared = known_variables()
    for scope in [inv["all"]["vars"], *inv["all"]["hosts"].values()]:
        undeclared = {k for k in scope if not k.startswith("ansible_")} - declared
        assert not undeclared


def test_one_apt_cache_decision_reaches_every_role(spec):
    for given in ({"common_apt_update_cache": False}, {"apt_update_cache": False}):
        v = render_inventory(spec, hosts_for(spec), given)["all"]["vars"]
        assert all(v[f"{role}_apt_update_cache"] is False for role in ROLES)
    v = render_inventory(spec, hosts_for(spec), {"apt_update_cache": True})["all"]["vars"]
    assert all(v[f"{role}_apt_update_cache"] is True for role in ROLES)
    with pytest.raises(ValueError, match="disagree"):
        render_inventory(spec, hosts_for(spec), {"apt_update_cache": True, "etcd_apt_update_cache": False})


@pytest.mark.parametrize("target_vars, message", [
    ({"no_such_var": 1}, "not a variable of any role"),
    ({"patroni_ttl": 99}, "override a value the spec sets"),
    ({"patroni_watchdog_mode": "sometimes"}, "not one of"),
])
def test_bad_target_variables_are_refused(spec, target_vars, message):
    with pytest.raises(ValueError, match=message):
        render_inventory(spec, hosts_for(spec), target_vars)


def test_target_variables_pass_through(spec):
    v = render_inventory(spec, hosts_for(spec), {"patroni_watchdog_mode": "automatic",
                                                  "ansible_become_method": "su"})["all"]["vars"]
    assert v["patroni_watchdog_mode"] == "automatic" and v["ansible_become_method"] == "su"


def test_hosts_must_match_the_spec(spec):
    hosts = hosts_for(spec)
    with pytest.raises(ValueError, match="do not match"):
        render_inventory(spec, hosts[:2], {})
    moved = hosts[:2] + [HostAccess(**{**hosts[2].__dict__, "address": "10.0.1.99"})]
    with pytest.raises(ValueError, match="10.0.1.99"):
        render_inventory(spec, moved, {})


# ----- extravars -----

def test_extravars_carry_every_password_and_nothing_else():
    secrets = FakeSecrets()
    extra = render_extravars(secrets)
    assert set(extra) == set(PASSWORD_VARS.values())
    assert set(PASSWORD_VARS) == set(NAMES)
    assert extra["patroni_superuser_password"] == secrets["superuser"]
    assert extra["patroni_restapi_password"] == secrets["rest_api"]
    assert set(extra) <= known_variables()


# ----- image packages -----

def test_image_packages_are_what_the_roles_install(spec):
    debs, pips = image_packages(spec)
    for package in ("postgresql-15", "postgresql-client-15", "etcd-server", "haproxy", "python3-venv", "python3-apt"):
        assert package in debs
    assert len(debs) == len(set(debs))
    assert not any("{{" in p for p in debs + pips)
    assert f"patroni[etcd3]=={spec.patroni.version}" in pips
    declared = [p for role in ROLES for p in role_defaults()[role].get(f"{role}_packages", [])]
    assert len(debs) == len(set(declared))


def test_image_packages_follow_the_patroni_version():
    _, pips = image_packages(spec_with(patroni={"version": "4.0.7"}))
    assert "patroni[etcd3]==4.0.7" in pips


def test_roles_constant_matches_site_yml():
    plays = yaml.safe_load((ANSIBLE_DIR / "site.yml").read_text())
    assert tuple(role["role"] for play in plays for role in play["roles"]) == ROLES


# ----- what the templates render: Ansible itself renders them locally -----

TEMPLATES = {
    "patroni.yml": "patroni/templates/patroni.yml.j2",
    "patroni.service": "patroni/templates/patroni.service.j2",
    "etcd.env": "etcd/templates/etcd.env.j2",
    "etcd-initial.env": "etcd/templates/etcd-initial.env.j2",
    "haproxy.cfg": "haproxy/templates/haproxy.cfg.j2",
    "etcd-leader-elsewhere.service": "patroni/templates/etcd-leader-elsewhere.service.j2",
}


def render_templates(tmp: Path, spec: StackSpec, **facts) -> Path:
    """Run a local play that renders the roles' templates with the inventory, role defaults at
    the lowest precedence (parent group) as in a real run, and the extravars (plus ``facts``, as
    a role's tasks would have set them). Returns the output dir."""
    inv = render_inventory(spec, hosts_for(spec), dict(LOCAL_VARS))
    defaults: dict = {}
    for values in role_defaults().values():
        defaults.update(values)
    for host in inv["all"]["hosts"].values():
        host.update(ansible_connection="local", ansible_python_interpreter=sys.executable, ansible_become=False)
    layered = {"all": {"vars": defaults, "children": {"stack": {"hosts": inv["all"]["hosts"], "vars": inv["all"]["vars"]}}}}
    (tmp / "inventory.json").write_text(json.dumps(layered))
    (tmp / "extravars.json").write_text(json.dumps({**render_extravars(FakeSecrets()), **facts}))
    out = tmp / "out"
    tasks = [{"name": f"Render {name}", "ansible.builtin.template": {
        "src": str(ANSIBLE_DIR / "roles" / src), "dest": f"{out}/{{{{ inventory_hostname }}}}/{name}", "mode": "0600"}}
        for name, src in TEMPLATES.items()]
    play = [{"name": "Render", "hosts": "all", "gather_facts": False, "become": False,
             "tasks": [{"name": "Create the output dir", "ansible.builtin.file": {
                 "path": f"{out}/{{{{ inventory_hostname }}}}", "state": "directory", "mode": "0700"}}, *tasks]}]
    (tmp / "render.yml").write_text(yaml.safe_dump(play))
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "inventory.json"),
                             "-e", f"@{tmp / 'extravars.json'}", str(tmp / "render.yml")],
                            capture_output=True, text=True, cwd=tmp, timeout=300,
                            env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
                                 "ANSIBLE_LOCAL_TEMP": str(tmp / "tmp"), "HOME": str(tmp)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


#: A spec far from every default, so a value hard-coded in a template shows up as a difference.
UNUSUAL = dict(
    network={"vnet_cidr": "10.8.0.0/16", "subnet_cidr": "10.8.3.0/24"},
    nodes=[{"name": f"db{i}", "address": f"10.8.3.{i + 20}"} for i in range(5)],
    ports={"postgres": 5433, "patroni": 8009, "etcd_client": 2479, "etcd_peer": 2480,
           "haproxy_primary": 6000, "haproxy_replicas": 6001, "haproxy_health": 8405},
    patroni={"scope": "orders", "ttl": 40, "loop_wait": 7, "retry_timeout": 9, "synchronous_mode": True,
             "maximum_lag_on_failover": 4096, "wal_sender_timeout_ms": 7000},
    postgres={"max_connections": 150, "parameters": {"shared_buffers": "256MB", "wal_level": "logical"}},
    haproxy={"check_inter_ms": 700, "check_fastinter_ms": 150, "check_downinter_ms": 250, "check_fall": 3,
             "check_rise": 2},
)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    spec = spec_with(**UNUSUAL)
    return spec, render_templates(tmp_path_factory.mktemp("render"), spec)


def test_patroni_yml_carries_the_spec(rendered):
    spec, out = rendered
    for node in spec.nodes:
        conf = yaml.safe_load((out / node.name / "patroni.yml").read_text())
        assert conf["name"] == node.name and conf["scope"] == spec.patroni.scope
        assert conf["restapi"]["listen"] == f"{node.address}:{spec.ports.patroni}"
        assert conf["restapi"]["authentication"]["password"] == FakeSecrets()["rest_api"]
        assert conf["postgresql"]["connect_address"] == f"{node.address}:{spec.ports.postgres}"
        assert conf["postgresql"]["authentication"]["rewind"]["password"] == FakeSecrets()["rewind"]
        assert conf["etcd3"]["hosts"] == [f"{n.address}:{spec.ports.etcd_client}" for n in spec.nodes]
        assert conf["watchdog"]["mode"] == "off"
        dcs = conf["bootstrap"]["dcs"]
        assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (
            spec.patroni.ttl, spec.patroni.loop_wait, spec.patroni.retry_timeout)
        assert dcs["synchronous_mode"] is spec.patroni.synchronous_mode
        assert dcs["maximum_lag_on_failover"] == spec.patroni.maximum_lag_on_failover
        assert dcs["postgresql"]["use_pg_rewind"] is True
        params = dcs["postgresql"]["parameters"]
        assert params["wal_log_hints"] == "on" and params["password_encryption"] == "scram-sha-256"
        assert {k: params[k] for k in spec.postgres_settings()} == spec.postgres_settings() == {
            "max_connections": "150", "wal_sender_timeout": "7000", "shared_buffers": "32768", "wal_level": "logical",
            "archive_mode": "on", "archive_timeout": "60", "archive_command": "/usr/local/bin/pgbackrest-archive-push orders %p"}
        assert params["hot_standby"] == "on" and params["max_wal_senders"] == 10, "the role's own parameters stay"
        hba = [line.split() for line in conf["postgresql"]["pg_hba"] if line.startswith("host")]
        assert [r[0] for r in hba[:2]] == ["hostnossl"] * 2 and all(r[-1] == "reject" for r in hba[:2]), \
            "plain TCP is refused first, from anywhere"
        assert {r[3] for r in hba[:2]} == {"0.0.0.0/0", "::/0"}
        assert {r[0] for r in hba[2:]} == {"hostssl"}, "every other TCP line needs TLS"
        assert {r[3] for r in hba[2:]} == {"127.0.0.1/32", str(spec.network.subnet_cidr)}
        assert all(r[-1] == "scram-sha-256" for r in hba[2:])
        assert conf["postgresql"]["parameters"]["ssl"] == "on"
        assert conf["postgresql"]["parameters"]["ssl_min_protocol_version"] == "TLSv1.2"
        for role in ("replication", "rewind"):
            assert conf["postgresql"]["authentication"][role]["sslmode"] == "verify-full"
        assert conf["etcd3"]["protocol"] == "https" and conf["etcd3"]["cert"] == conf["restapi"]["certfile"]
        assert ["hostssl", "replication", "replicator", str(spec.network.subnet_cidr), "scram-sha-256"] in hba


def _env(path: Path) -> dict:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {k: v.strip('"') for k, v in (line.split("=", 1) for line in lines)}


def test_etcd_env_forms_the_cluster_from_the_spec(rendered):
    """The runtime settings in etcd.env; the bootstrap-only ones (a change there must not restart a
    running member) in etcd-initial.env, forming a new cluster of every node of the spec."""
    spec, out = rendered
    initial = ",".join(f"{n.name}=https://{n.address}:{spec.ports.etcd_peer}" for n in spec.nodes)
    for node in spec.nodes:
        env, boot = _env(out / node.name / "etcd.env"), _env(out / node.name / "etcd-initial.env")
        assert env["ETCD_NAME"] == node.name
        assert not [k for k in env if k.startswith("ETCD_INITIAL_")], env
        assert boot["ETCD_INITIAL_CLUSTER"] == initial and boot["ETCD_INITIAL_CLUSTER_STATE"] == "new", boot
        assert boot["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"https://{node.address}:{spec.ports.etcd_peer}"
        assert env["ETCD_LISTEN_CLIENT_URLS"] == (f"https://{node.address}:{spec.ports.etcd_client},"
                                                  f"https://127.0.0.1:{spec.ports.etcd_client}")
        assert env["ETCD_ENABLE_V2"] == "false"
        assert env["ETCD_PRE_VOTE"] == "true", "a rejoining isolated member must not depose etcd's leader"
        assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true", \
            "clients and peers must show a certificate of the stack's CA"
        assert env["ETCD_TRUSTED_CA_FILE"] == env["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/pgha/tls/ca.crt"
        assert "TLS_RSA" not in env["ETCD_CIPHER_SUITES"] and "GCM" in env["ETCD_CIPHER_SUITES"]


def test_members_joining_a_running_cluster_bootstrap_one_at_a_time(tmp_path):
    """Scale out: each joiner starts as "existing" with the cluster as it is when it starts (every
    member but the joiners after it: etcd refuses a join whose initial cluster differs)."""
    spec = spec_with(nodes=[{"name": f"pg{i}", "address": f"10.0.1.{i + 3}"} for i in range(1, 6)])
    joining = [{"name": n.name, "address": str(n.address)} for n in spec.nodes[3:]]
    out = render_templates(tmp_path, spec, etcd_joining_members=joining)
    url = {n.name: f"{n.name}=https://{n.address}:{spec.ports.etcd_peer}" for n in spec.nodes}
    boot = {n.name: _env(out / n.name / "etcd-initial.env") for n in spec.nodes}
    assert boot["pg4"]["ETCD_INITIAL_CLUSTER"] == ",".join(url[n] for n in ("pg1", "pg2", "pg3", "pg4"))
    assert boot["pg5"]["ETCD_INITIAL_CLUSTER"] == ",".join(url.values())
    assert [boot[n]["ETCD_INITIAL_CLUSTER_STATE"] for n in url] == ["new", "new", "new", "existing", "existing"]


def test_the_etcd_leader_daemon_asks_its_own_patroni_and_member_and_hands_to_the_others(rendered):
    spec, out = rendered
    port = spec.ports.etcd_client
    for node in spec.nodes:
        unit = (out / node.name / "etcd-leader-elsewhere.service").read_text().replace("\\\n", " ")
        argv = next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split()
        pairs = list(zip(argv[1::2], argv[2::2]))
        assert ("--patroni", f"https://{node.address}:{spec.ports.patroni}/primary") in pairs
        assert [v for k, v in pairs if k == "--local"] == [f"https://{node.address}:{port}"]
        assert sorted(v for k, v in pairs if k == "--peer") == sorted(
            f"https://{n.address}:{port}" for n in spec.nodes if n.name != node.name)


def test_haproxy_cfg_routes_to_every_node_with_the_spec_checks(rendered):
    spec, out = rendered
    cfg = (out / spec.nodes[0].name / "haproxy.cfg").read_text()
    sections = {}
    for block in cfg.split("\n\n"):
        lines = [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
        if lines:
            sections[lines[0]] = lines[1:]
    primary, replicas = sections["listen primary"], sections["listen replicas"]
    h = spec.haproxy
    default = (f"default-server inter {h.check_inter_ms}ms fastinter {h.fastinter_ms}ms downinter {h.downinter_ms}ms "
               f"fall {h.check_fall} rise {h.check_rise} on-marked-down shutdown-sessions")
    for section, port, check in ((primary, spec.ports.haproxy_primary, "/primary"),
                                 (replicas, spec.ports.haproxy_replicas, "/replica")):
        assert f"bind :{port}" in section and f"option httpchk OPTIONS {check}" in section and default in section
        servers = [line.split() for line in section if line.startswith("server ")]
        assert [(s[1], s[2]) for s in servers] == [(n.name, f"{n.address}:{spec.ports.postgres}") for n in spec.nodes]
        assert all(s[5:] == ["check", "port", str(spec.ports.patroni), "check-ssl", "verify", "required", "ca-file",
                             "/etc/pgha/tls/ca.crt", "verifyhost", s[1]] for s in servers), \
            "checks over HTTPS, verifying the CA and each server's own name"
    health = sections["frontend health"]
    assert f"bind :{spec.ports.haproxy_health}" in health and "monitor-uri /health" in health
    assert "monitor fail if { nbsrv(primary) lt 1 }" in health, "the probe must fail without a primary to route to"


def test_patroni_unit_restarts_always_as_postgres(rendered):
    spec, out = rendered
    unit = (out / spec.nodes[0].name / "patroni.service").read_text().splitlines()
    assert "Restart=always" in unit and "User=postgres" in unit and "KillMode=process" in unit


def test_rendering_notices_a_module_constant_drift(monkeypatch, spec):
    """The check on undeclared variables can fail: a misspelt variable is refused."""
    original = inventory._spec_vars
    monkeypatch.setattr(inventory, "_spec_vars", lambda s: {**original(s), "patroni_tll": 20})
    with pytest.raises(ValueError, match="patroni_tll"):
        render_inventory(spec, hosts_for(spec), {})


# ----- the roles' own conventions -----

@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_prefixed_and_commented(role):
    lines = (ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith(("#", "---")):
            name = line.split(":", 1)[0]
            assert name.startswith(f"{role}_"), f"{role}: {name} lacks the role prefix"
            previous = next((p for p in reversed(lines[:i]) if p.strip()), "")
            assert previous.startswith("#"), f"{role}: {name} has no comment above it"


def test_no_role_waits_with_pause():
    tasks = "\n".join(p.read_text() for p in (ANSIBLE_DIR / "roles").glob("*/*/*.yml"))
    assert "pause" not in tasks and "wait_for:" not in tasks
    assert tasks.count("until:") >= 5


def test_dcs_patch_sets_the_specs_parameters_and_removes_those_it_no_longer_sets(tmp_path):
    """The PATCH task of the patroni role's dcs.yml, its own ``vars`` and ``when``, evaluated against
    ``GET /config`` answers: an up-to-date DCS is left alone, a stale value is set, and a parameter
    dropped from the spec is PATCHed to null (Patroni then deletes it)."""
    [_, task] = yaml.safe_load((ANSIBLE_DIR / "roles" / "patroni" / "tasks" / "dcs.yml").read_text())
    defaults: dict = {}
    for values in role_defaults().values():
        defaults.update(values)
    spec = spec_with(postgres={"parameters": {"work_mem": "8MB"}})
    p = spec.patroni
    current = {"ttl": p.ttl, "loop_wait": p.loop_wait, "retry_timeout": p.retry_timeout, "check_timeline": True,
               "maximum_lag_on_failover": p.maximum_lag_on_failover, "synchronous_mode": p.synchronous_mode,
               "failsafe_mode": p.failsafe_mode,
               "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": {
                   **defaults["patroni_postgresql_base_parameters"], **spec.postgres_settings()}}}
    stale = copy.deepcopy(current)
    stale["postgresql"]["parameters"] |= {"work_mem": "4096", "shared_buffers": "32768"}
    play = [{"hosts": "localhost", "gather_facts": False, "vars": {**defaults, **_spec_vars(spec)}, "tasks": [{
        "name": "Evaluate", "loop": [current, stale, {}], "loop_control": {"index_var": "i"},
        "vars": {**task["vars"], "patroni_dcs_current": {"json": "{{ item }}"}},
        "ansible.builtin.copy": {"dest": f"{tmp_path}/{{{{ i }}}}.json", "mode": "0600", "content": (
            f"{{{{ {{'patch': patroni_dcs_patch.postgresql.parameters, 'when': {task['when']}}} | to_json }}}}")}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(tmp_path / "play.yml")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
                                 "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [up_to_date, with_stale, empty] = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(3)]
    assert up_to_date == {"when": False, "patch": current["postgresql"]["parameters"]}
    assert with_stale["when"] is True and with_stale["patch"] == {**current["postgresql"]["parameters"], "shared_buffers": None}
    assert empty["when"] is True and empty["patch"] == current["postgresql"]["parameters"]
