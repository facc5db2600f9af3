"""Day two's plan: every spec field has an impact, each impact class is classified as it must be, a
replace is refused naming what forces it, and stage fingerprints cover only what a stage consumes."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from deployer import plan, stages
from deployer.spec import StackSpec, load_spec
from deployer.state import StackState

SPEC = load_spec()


def changed(**updates) -> StackSpec:
    """SPEC with nested updates, e.g. changed(postgres={"max_connections": 150})."""
    raw = SPEC.model_dump(mode="json")
    for key, value in updates.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    return StackSpec.model_validate(raw)


def leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf field of the spec model, named as ``plan.flatten`` names them (one node/rule)."""
    out = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        args = getattr(kind, "__args__", ())
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += leaf_paths(kind, f"{prefix}{name}.")
        elif args and isinstance(args[0], type) and issubclass(args[0], BaseModel) and name == "nodes":
            out += leaf_paths(args[0], f"{prefix}{name}.pg1.")
        else:
            out.append(f"{prefix}{name}")
    return out


#: Fields whose leaves are a mapping of names (classified per name, see the parameters' tests).
MAPPINGS = ("postgres.parameters",)


@pytest.mark.parametrize("path", [p for p in leaf_paths(StackSpec) if p not in MAPPINGS])
def test_every_spec_field_has_a_decided_impact(path):
    impact, why = plan.classify(path)
    assert impact in plan.IMPACTS and why


def test_a_field_without_a_rule_is_refused_rather_than_guessed():
    with pytest.raises(KeyError, match="no rule of deployer.plan.RULES says what changing 'postgres.shiny'"):
        plan.classify("postgres.shiny")


@pytest.mark.parametrize("spec, path, impact", [
    (changed(workload={"writes_per_s": 10}), "workload.writes_per_s", "none"),
    (changed(haproxy={"check_inter_ms": 2000}), "haproxy.check_inter_ms", "in place"),
    (changed(load_balancer={"probe_threshold": 3}), "load_balancer.probe_threshold", "in place"),
    (changed(patroni={"ttl": 40}), "patroni.ttl", "reload"),
    (changed(postgres={"max_connections": 150}), "postgres.max_connections", "rolling restart"),
    (changed(patroni={"version": "4.0.7"}), "patroni.version", "rolling restart"),
    (changed(network={"vnet_cidr": "10.0.0.0/16", "subnet_cidr": "10.0.2.0/24"},
             nodes=[{"name": n.name, "address": f"10.0.2.{4 + i}"} for i, n in enumerate(SPEC.nodes)]),
     "network.subnet_cidr", "replace"),
])
def test_each_impact_class(spec, path, impact):
    found = {c.path: c for c in plan.plan(SPEC, spec).changes}
    assert found[path].impact == impact, found


def test_a_rule_added_to_the_nsg_is_one_in_place_change():
    rule = {"name": "allow-extra", "priority": 900, "access": "allow", "source": "10.9.0.0/16", "ports": ["ssh"]}
    spec = changed(security_rules=[*SPEC.model_dump(mode="json")["security_rules"], rule])
    changes = plan.plan(SPEC, spec).changes
    assert [(c.path, c.impact) for c in changes] == [("security_rules.allow-extra", "in place")]


def test_nodes_added_and_removed_are_one_change_each():
    nodes = [n.model_dump(mode="json") for n in SPEC.nodes]
    five = changed(nodes=nodes + [{"name": "pg4", "address": "10.0.1.7"}, {"name": "pg5", "address": "10.0.1.8"}])
    grown = plan.plan(SPEC, five)
    assert [(c.path, c.impact) for c in grown.changes] == [("nodes.pg4", "add node"), ("nodes.pg5", "add node")]
    shrunk = plan.plan(five, SPEC)
    assert [(c.path, c.impact) for c in shrunk.changes] == [("nodes.pg4", "remove node"), ("nodes.pg5", "remove node")]
    assert shrunk.impact == "remove node" and shrunk.refusal("x") is None


def test_a_moved_node_is_a_replace():
    nodes = [n.model_dump(mode="json") for n in SPEC.nodes]
    nodes[1]["address"] = "10.0.1.9"
    found = plan.plan(SPEC, changed(nodes=nodes))
    assert [(c.path, c.impact) for c in found.changes] == [("nodes.pg2.address", "replace")]


def test_a_pending_restart_reported_by_patroni_is_planned_whatever_the_spec_says():
    found = plan.plan(SPEC, SPEC, pending=["pg2"])
    assert [(c.path, c.impact) for c in found.changes] == [("node pg2", "rolling restart")]
    assert plan.plan(SPEC, SPEC).lines() == ["Plan: no change (the deployed stack matches the spec)."]


def test_a_replace_is_refused_naming_what_forces_it_and_what_is_lost():
    spec = changed(patroni={"scope": "other"})
    found = plan.plan(SPEC, changed(postgres={"max_connections": 150}, patroni={"scope": "other"}))
    assert found.impact == "replace"
    refusal = found.refusal("the PostgreSQL cluster 'pgha' (system identifier 1)")
    assert "patroni.scope: 'pgha' -> 'other' forces replacement" in refusal
    assert "deletes the PostgreSQL cluster 'pgha' (system identifier 1)" in refusal and "--replace" in refusal
    assert "max_connections" not in refusal
    assert plan.plan(SPEC, spec).lines()[0] == "Plan: 1 change(s): 1 replace."


def test_the_plan_lists_the_worst_impact_first():
    lines = plan.plan(SPEC, changed(workload={"steady_s": 5}, postgres={"max_connections": 150})).lines()
    assert lines[0] == "Plan: 2 change(s): 1 rolling restart, 1 none."
    assert "postgres.max_connections: 100 -> 150" in lines[1] and "workload.steady_s" in lines[2]


@pytest.mark.parametrize("stage, spec, same", [
    ("provision", changed(workload={"steady_s": 5}), True),
    ("provision", changed(postgres={"max_connections": 150}), True),
    ("provision", changed(load_balancer={"probe_threshold": 3}), False),
    ("configure", changed(workload={"steady_s": 5}), True),
    ("configure", changed(load_balancer={"probe_threshold": 3}), True),
    ("configure", changed(postgres={"max_connections": 150}), False),
    ("attach", changed(postgres={"max_connections": 150}), True),
    ("attach", changed(load_balancer={"probe_threshold": 3}), False),
])
def test_a_stage_fingerprint_covers_only_what_the_stage_consumes(stage, spec, same):
    state = StackState(name="fp", target="local", spec_path="x")
    assert (stages.fingerprint(stage, SPEC, state) == stages.fingerprint(stage, spec, state)) is same


def test_every_spec_field_is_consumed_by_a_stage_or_changes_nothing():
    consumed = set().union(*stages.CONSUMES.values())
    idle = {p.split(".")[0] for p in leaf_paths(StackSpec)
            if p not in MAPPINGS and plan.classify(p)[0] == "none"}
    assert set(StackSpec.model_fields) - consumed <= idle, set(StackSpec.model_fields) - consumed - idle


def test_the_deployed_spec_is_the_newest_successful_stages():
    state = StackState(name="fp", target="local", spec_path="x")
    assert stages.deployed_spec(state) is None
    newer = changed(postgres={"max_connections": 150})
    state.stages["provision"] = state.stages.get("provision") or _record(SPEC, 1)
    state.stages["configure"] = _record(newer, 2)
    state.stages["attach"] = _record(SPEC, 3, ok=False)
    assert stages.deployed_spec(state) == newer


def _record(spec: StackSpec, at: float, ok: bool = True):
    from deployer.state import StageRecord

    return StageRecord(ok=ok, seconds=1, finished_at=at, spec=spec.model_dump(mode="json"))
