"""Every drill as data (Jepsen's generator, flattened): the fault, the capability it needs, its
budget from the spec and the behaviour it expects, in one sentence.

Adding a drill is adding one entry here (and, if the platform must do something new, one target
primitive): the chaos suites iterate this catalogue, so the new drill runs under load
(``suites/test_drills.py``) and, when it replaces the leader unplanned, without load too
(``suites/test_failover.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from deployer.budgets import Budgets
from deployer.drills import nemesis
from deployer.targets.base import Capability


@dataclasses.dataclass(frozen=True)
class Drill:
    """One drill against the current leader. ``budget`` turns the stack's budgets into the write gap
    it may cause; ``planned``: the cluster hands over on request (no lease has to expire)."""

    name: str
    fault: nemesis.Fault
    budget: Callable[[Budgets], float]
    expect: str
    needs: Capability | None = None
    planned: bool = False


CATALOGUE: tuple[Drill, ...] = (
    Drill("switchover", nemesis.switchover, lambda b: b.switchover_s, planned=True,
          expect="Patroni demotes the leader and promotes the healthiest replica within one loop; "
                 "no acknowledged write is lost."),
    Drill("crash-primary-vm", nemesis.crashed_vm, lambda b: b.crash_failover_s, needs="crash_vm",
          expect="The leader key expires after ttl, a replica is promoted and the load balancer follows; "
                 "the crashed node comes back as a streaming replica on one timeline."),
    Drill("isolate-primary", nemesis.isolated, lambda b: b.crash_failover_s, needs="isolate",
          expect="The isolated leader cannot renew its key and demotes itself, a replica is promoted "
                 "within the crash budget; after heal the old leader rejoins as a replica (pg_rewind)."),
)

