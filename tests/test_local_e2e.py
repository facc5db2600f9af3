"""The real thing: deploy the staged stack on the local target, check it, converge again, tear down.

Runs only with ``-m e2e`` (``make test`` does), as root. The tests run in file order and share one
stack; the module fixture tears it down even when a test fails or the run is interrupted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from deployer import defects, leaks
from deployer.budgets import Budgets
from deployer.drills.catalogue import CATALOGUE
from deployer.paths import REPORTS
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets import get

pytestmark = pytest.mark.e2e
NAME = "pgha"
#: The spec make test deploys: stack.yaml with a shorter steady load before each drill.
CI_SPEC = Path(__file__).parents[1] / "deployer" / "profiles" / "ci.yaml"
SPEC = load_spec(CI_SPEC)
BY_DRILL = {d.name: d for d in CATALOGUE}
#: Everything the deployer printed in this module's runs (scanned for leaked secrets).
PRINTED: list[str] = []


def deployer(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "deployer.cli", *args], capture_output=True, text=True)
    PRINTED.extend([proc.stdout, proc.stderr])
    sys.stderr.write(proc.stderr[-6000:])
    if check:
        assert proc.returncode == 0, f"deployer {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def deployed():
    try:
        deployer("up", "--name", NAME, "--spec", str(CI_SPEC))
        yield StackState.load(NAME)
    finally:
        deployer("down", "--name", NAME, check=False)


def test_invalid_spec_is_refused_before_anything_is_created(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("stack.yaml").read_text().replace("subnet_cidr: 10.0.1.0/24", "subnet_cidr: 10.0.1.0/33"))
    proc = deployer("up", "--spec", str(bad), "--name", "badspec", check=False)
    assert proc.returncode == 2 and "network.subnet_cidr" in proc.stderr
    assert "badspec-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not StackState.path_for("badspec").exists()


def test_a_bad_stack_name_is_refused_before_anything_is_created():
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for command in ("up", "down", "status"):
        proc = deployer(command, "--name", "Bad Name", check=False)
        assert proc.returncode == 2 and "stack name 'Bad Name' is invalid" in proc.stderr, proc.stderr[-500:]
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == before
    assert not StackState.path_for("Bad Name").parent.exists()


def test_stages_recorded_and_pool_empty_after_provision(deployed):
    state = StackState.load(NAME)
    assert all(state.stages[s].ok for s in ("provision", "configure", "attach", "verify")), state.summary()
    assert state.stages["provision"].lb_members == [], "the backend pool must be empty after provision"
    assert [m["node"] for m in state.stages["attach"].lb_members] == [n.name for n in SPEC.nodes]


def test_status_json_shows_a_healthy_cluster_and_pool(deployed):
    status = json.loads(deployer("status", "--name", NAME, "--json").stdout)
    roles = sorted((n["role"], n["state"]) for n in status["nodes"])
    assert roles == [("leader", "running"), ("replica", "streaming"), ("replica", "streaming")], status["nodes"]
    assert all(n["lag_bytes"] == 0 for n in status["nodes"] if n["role"] == "replica"), status["nodes"]
    assert [(m["node"], m["healthy"]) for m in status["load_balancer"]["members"]] == [(n.name, True) for n in SPEC.nodes]
    assert status["load_balancer"]["frontend"] == f"{SPEC.local.frontend_address}:{SPEC.ports.haproxy_primary}"
    assert set(status["stages"]) == {"provision", "configure", "attach", "verify"}


#: The change drills are long drills (each runs `deployer up` twice under load: 3 to 8 minutes here),
#: and so are the backup drills (each waits for the archive and takes a backup under load) and the
#: recovery drills (each restores the whole cluster under load): they stay out of make test, as the
#: long benchmarks do; `make drill` runs all of them. So do four fault drills whose mechanism another
#: one in make test covers (kill-patroni: kill-postmaster's and freeze-patroni's failover; isolate-replica:
#: isolate-primary's partition; stop-etcd-member: etcd-quorum-loss's; cluster-restart: crash-primary-vm's
#: VM restart): about 2.5 minutes on a machine where make test approached 40.
LONG_DRILLS_OUT_OF_MAKE_TEST = ("not change- and not backup- and not test_recovery and not kill-patroni and not "
                                "isolate-replica and not stop-etcd-member and not cluster-restart")


def test_the_suites_pass_against_the_stack(deployed):
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "--stack", NAME, "-q", "-m", "not teardown",
                           "-k", LONG_DRILLS_OUT_OF_MAKE_TEST, "-p", "no:cacheprovider"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_a_drill_fails_naming_its_budget_when_the_budget_is_below_what_the_fault_takes(deployed):
    """The negative control of every drill's budget: the switchover drill with its budget scaled to
    a twentieth (about 0.4 s) must fail, saying the gap exceeds that budget."""
    budget = BY_DRILL["switchover"].budget(Budgets(SPEC)) * 0.05
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites/test_drills.py", "--stack", NAME,
                           "-k", "drill and switchover and not backup and not change",  # the plain switchover only
                           "--budget-scale", "0.05", "-q", "-p", "no:cacheprovider"], capture_output=True, text=True)
    assert proc.returncode == 1 and f"exceeds the budget {budget:g} s" in proc.stdout, proc.stdout[-3000:]


def _read_only_suites(*selection: str, junit: Path) -> dict[str, str]:
    """Run the read-only suites (or ``selection``: guard suites, a guard may be a fault test) against the
    e2e stack; failed test id -> message."""
    args = list(selection) or ["suites", "-m", "smoke or acceptance", "-n", "2"]
    subprocess.run([sys.executable, "-m", "pytest", *args, "--stack", NAME, "-q", "-p", "no:cacheprovider",
                    f"--junitxml={junit}"], capture_output=True, text=True)
    failed = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            test_id = f"{case.get('classname').replace('.', '/')}.py::{case.get('name')}"
            failed[test_id] = f"{problem.get('message', '')}\n{problem.text or ''}"
    return failed


def test_every_seeded_defect_is_caught_by_its_guard_naming_it_and_heal_restores_the_spec(deployed, tmp_path):
    """Detection power: each defect of ``deployer/defects.py``, applied with ``deployer break``, makes
    its guarding tests fail with a message containing its evidence (so a failure a previous defect
    left would not count: it names another); after every ``deployer heal``, every read-only suite
    and every guard passes again, a failure naming the defects it guards. (One run after all heals
    rather than one per defect: about 20 s saved per defect, which keeps make test in its 30 minutes.)
    Writes reports/detection.json."""
    results, problems = {}, []
    for defect in defects.CATALOGUE:
        deployer("break", defect.name, "--name", NAME)
        guards = [f"suites/{g}" for g in defect.guards]
        try:
            failed = _read_only_suites(*guards, junit=tmp_path / f"{defect.name}-broken.xml")
        finally:
            deployer("heal", "--name", NAME)
        caught = sorted(t for t in failed if any(t.endswith(g) for g in defect.guards))
        named = [t for t in caught if defect.evidence in failed[t]]
        results[defect.name] = {"description": defect.description, "caught_by": caught,
                                "message": failed[named[0]].strip().splitlines()[0][:500] if named else None}
        if len(caught) != len(defect.guards) or not named:
            problems.append(f"{defect.name}: guards {defect.guards}, failed {sorted(failed)}, naming it: {named}")
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "detection.json").write_text(json.dumps(results, indent=2) + "\n")
    assert not problems, "\n".join(problems)
    # the read-only suites, then (serialised) the guards among the fault tests: those of the load balancer's probe
    still = {**_read_only_suites(junit=tmp_path / "healed.xml"),
             **_read_only_suites("suites", "-m", "chaos", "-k", "not test_drill and not test_recovery",
                                 junit=tmp_path / "healed-faults.xml")}
    ran = {f"{c.get('classname').replace('.', '/')}.py::{c.get('name')}"
           for junit in ("healed.xml", "healed-faults.xml")
           for c in ElementTree.parse(tmp_path / junit).iter("testcase") if c.find("skipped") is None}
    unhealed = {t: sorted(d.name for d in defects.CATALOGUE if any(t.endswith(g) for g in d.guards)) for t in still}
    assert not still, f"after every heal, failing (test: the defects it guards): {unhealed}"
    unrun = sorted({g for d in defects.CATALOGUE for g in d.guards if not any(t.endswith(g) for t in ran)})
    assert not unrun, f"guards the read-only suites did not run after the heals: {unrun}"


def test_no_secret_nor_private_key_in_any_report_log_or_output(deployed):
    """After the suites, the drills and the detection runs: no generated password, no body of the
    stack's private keys and no PEM private key in ``reports/`` (run reports, node log bundles, drill
    records) nor in anything the deployer printed (``tests/test_leaks.py`` plants each kind)."""
    secrets = leaks.stack_secrets(StackState.path_for(NAME).parent)
    printed = leaks.leaks_in("\n".join(PRINTED).encode(), secrets)
    assert PRINTED and not printed, f"the deployer printed {', '.join(printed)}"
    found = leaks.leaks_under(REPORTS, secrets)
    assert not found, f"secrets in reports/: {found}"


def test_up_after_a_run_that_died_cleans_the_leftovers_first(deployed):
    # A run that died: its state file is gone and a VM was killed, the rest is still there.
    target = get("local")(SPEC, StackState.load(NAME))
    target.vm("pg2").kill()
    StackState.path_for(NAME).unlink()
    proc = deployer("up", "--name", NAME, "--spec", str(CI_SPEC))
    log = " ".join(proc.stderr.split())
    assert "left resources behind and was never deployed; tearing them down first" in log, log[-2000:]
    status = json.loads(deployer("status", "--name", NAME, "--json").stdout)
    assert sorted(n["role"] for n in status["nodes"]) == ["leader", "replica", "replica"], status["nodes"]
    assert all(m["healthy"] for m in status["load_balancer"]["members"]), status["load_balancer"]


def test_second_up_keeps_the_vms_and_converges_with_no_change(deployed):
    proc = deployer("up", "--name", NAME, "--spec", str(CI_SPEC), "--force", "configure")  # configure is skipped unless forced
    log = " ".join(proc.stderr.split())
    assert "Provision: done at " in log and "still valid (every VM runs and its sshd answers); skipped." in log, log[-2000:]
    state = StackState.load(NAME)
    assert state.stages["configure"].facts["changed"] == 0, state.stages["configure"].facts
    assert state.stages["verify"].ok


def test_what_if_prints_the_plan_and_up_refuses_a_replace_naming_what_is_lost(deployed, tmp_path):
    """Day two on the live stack: a changed spec's plan, each change with its impact, changes nothing;
    a plan that replaces the cluster is refused before anything changes, naming the data it holds."""
    changed = tmp_path / "changed.yaml"
    changed.write_text(f"extends: {CI_SPEC}\npostgres:\n  max_connections: 150\nhaproxy:\n  check_fall: 3\n")
    before = StackState.load(NAME).stages
    plan = " ".join(deployer("up", "--name", NAME, "--spec", str(changed), "--what-if").stderr.split())
    assert "Plan: 2 change(s): 1 rolling restart, 1 in place." in plan, plan
    assert "postgres.max_connections: 100 -> 150" in plan and "haproxy.check_fall: 2 -> 3" in plan, plan
    replaced = tmp_path / "replaced.yaml"
    replaced.write_text(f"extends: {CI_SPEC}\npatroni:\n  scope: other\n")
    proc = deployer("up", "--name", NAME, "--spec", str(replaced), check=False)
    refusal = " ".join(proc.stderr.split())
    status = json.loads(deployer("status", "--name", NAME, "--json").stdout)  # still answers: nothing changed
    assert proc.returncode == 2 and "patroni.scope: 'pgha' -> 'other' forces replacement" in refusal, refusal[-1500:]
    assert "and every row in it" in refusal and "--replace" in refusal, refusal[-1500:]
    assert StackState.load(NAME).stages == before and all(n["state"] in ("running", "streaming") for n in status["nodes"])


def test_down_leaves_nothing_behind(deployed):
    proc = deployer("down", "--name", NAME)
    assert "is gone" in proc.stderr
    assert f"{NAME}-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "/var/lib/pgha/" not in Path("/proc/mounts").read_text()
    assert subprocess.run(["pgrep", "-f", f"systemd-nspawn.*/var/lib/pgha/{NAME}/"]).returncode == 1
    assert not list(Path("/sys/fs/cgroup/unified").glob(f"**/{NAME}.*"))
    assert not StackState.path_for(NAME).parent.exists(), "the state dir (secrets included) goes with the stack"
