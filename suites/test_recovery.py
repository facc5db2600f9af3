"""Recovery drills under load (``deployer.drills.recovery``, ``make drill``): the whole cluster lost
and restored from the repository to its latest archived WAL, and a point-in-time restore, each
judged against the workload's history (what a restore loses, and how long it takes) and recorded
in drills.json."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import pytest_html

from deployer.drills import recovery

pytestmark = pytest.mark.chaos


@pytest.fixture(autouse=True)
def _backups_on(stack):
    if not stack.spec.backup.enabled:
        pytest.skip("the spec turns backups off (backup.enabled: false)")


def _run(stack, mode, extras):
    result = recovery.run(stack, mode)
    extras.append(pytest_html.extras.png(base64.b64encode(Path(result.record["timeline_plot"]).read_bytes()).decode()))
    return result


def test_recovery_of_the_whole_cluster_loses_no_more_than_the_rpo(stack, extras):
    """Every node's data directory destroyed while writes run; ``restore --latest``: the writes
    missing are a tail no longer than ``backup.rpo_s``, never a hole; writes resume (RTO recorded)."""
    result = _run(stack, "latest", extras)
    assert not result.failures, "restore-latest: " + "; ".join(result.failures)


def test_recovery_to_a_point_in_time_holds_exactly_the_writes_before_it(stack, extras):
    """``restore --to T`` with T during steady load: every write acknowledged before T is there, none
    started after it."""
    result = _run(stack, "time", extras)
    assert not result.failures, "restore-point-in-time: " + "; ".join(result.failures)
