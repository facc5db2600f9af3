"""The ``lb_counters`` read-back: the local load balancer's per-member ``stot`` from a recorded
``show stat``, and the spread check the acceptance suite applies to two readings."""

from __future__ import annotations

from pathlib import Path

import pytest

import deployer.state
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets import get
from deployer.targets.contract import check_spread
from deployer.targets.local import lb
from deployer.targets.local.target import LocalTarget

SPEC = load_spec()
#: ``show stat`` of the local load balancer (HAProxy 2.6 columns): frontend, three members (pg3
#: down, never sent a connection), the backend aggregate.
SHOW_STAT = (Path(__file__).parent / "fixtures" / "lb_show_stat.csv").read_text()


def test_local_lb_connections_are_each_members_stot_from_show_stat(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(lb, "admin", lambda rundir, cmd: asked.append((rundir, cmd)) or SHOW_STAT)
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)
    target = LocalTarget(SPEC, StackState(name="pgha", target="local", spec_path="stack.yaml"))
    assert target.lb_connections() == {"pg1": 41, "pg2": 40, "pg3": 0}, "FRONTEND and BACKEND rows are no member"
    assert asked == [(tmp_path / "pgha" / "lb", "show stat")]


def test_the_capability_is_the_local_targets_and_not_azures():
    assert "lb_counters" in get("local").capabilities
    assert "lb_counters" not in get("azure").capabilities, "Azure's Standard LB has no per-member connection count"


def test_connections_on_two_members_or_more_pass_and_report_each_increase():
    before = {"pg1": 41, "pg2": 40, "pg3": 0}
    assert check_spread(before, {"pg1": 45, "pg2": 44, "pg3": 4}) == {"pg1": 4, "pg2": 4, "pg3": 4}
    assert check_spread(before, {"pg1": 47, "pg2": 46, "pg3": 0}) == {"pg1": 6, "pg2": 6, "pg3": 0}
    assert check_spread({}, {"pg1": 1, "pg2": 1}) == {"pg1": 1, "pg2": 1}, "a member unseen before counts from 0"


def test_every_connection_on_one_member_fails_naming_the_counts():
    """Negative control: a load balancer that pins every new connection to one member."""
    before = {"pg1": 41, "pg2": 40, "pg3": 0}
    with pytest.raises(AssertionError) as err:
        check_spread(before, {"pg1": 53, "pg2": 40, "pg3": 0})
    assert str(err.value) == ("the load balancer sent the new connections to 1 member(s) ['pg1'], expected at least 2: "
                              "its counters went from {'pg1': 41, 'pg2': 40, 'pg3': 0} to "
                              "{'pg1': 53, 'pg2': 40, 'pg3': 0}")
    with pytest.raises(AssertionError, match="to 0 member"):
        check_spread(before, before)
    with pytest.raises(AssertionError, match=r"to 2 member\(s\) \['pg1', 'pg2'\], expected at least 3"):
        check_spread(before, {"pg1": 42, "pg2": 41, "pg3": 0}, minimum_members=3)
