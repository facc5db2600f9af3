"""etcd as Patroni's DCS across a member's stop: the member turns its clients away (a reset, a
refused connection or gRPC Unavailable, which Patroni retries on another member), never with
another error answer (gRPC Unknown above all, which Patroni does not retry: a leader whose client
it was would demote itself). Clients
as Patroni is one, kept-alive on another node, observe it (``deployer.dcs_clients``)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployer import dcs_clients
from deployer.drills import nemesis
from deployer.inventory import TLS_ON_NODE, role_defaults
from deployer.wait import wait_until

pytestmark = pytest.mark.chaos

#: The clients run this long; the member stops STOP_AFTER_S into their run.
CLIENTS_S, STOP_AFTER_S = 6.0, 2.0

#: Clients at once, each with a request in flight most of the time (more make an error answer, where
#: the member gives one, likelier to be seen: 16 saw one in each stop of an undrained member).
CLIENTS = 16


def test_a_stopping_etcd_member_turns_its_clients_away_and_never_answers_them_an_error(stack):
    """One replica's etcd member stops (``systemctl stop``, as an upgrade or a drill does it) while
    keep-alive clients on another node post reads and keep watches open on it: they were answered
    before, turned away after, and no answer nor the end of any watch was an error. Healed: the
    member started again, every member healthy."""
    victim = next(m.name for m in stack.cluster() if m.role == "replica")
    client = next(n.name for n in stack.spec.nodes if n.name != victim)
    python = f"{role_defaults()['patroni']['patroni_venv']}/bin/python"
    argv = ["sudo", python, "-", stack.target.address_of(victim), str(stack.spec.ports.etcd_client), str(CLIENTS_S),
            str(CLIENTS), TLS_ON_NODE["ca"], TLS_ON_NODE["cert"], TLS_ON_NODE["key"]]
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(stack.ssh, client, argv, timeout=CLIENTS_S + 60, input=Path(dcs_clients.__file__).read_text())
        time.sleep(STOP_AFTER_S)  # the fault lands inside the clients' run; nothing is asserted on time
        with nemesis.stopped_service("etcd")(stack, victim):
            tally = json.loads(run.result().stdout)
    wait_until("every etcd member healthy", lambda: stack.etcdctl(client, "endpoint", "health",
                                                                  endpoints=stack.etcd_endpoints()),
               lambda health: all(h.get("health") for h in health), timeout=stack.budgets.rejoin_s)
    assert tally["ok"] and tally["turned_away"], (
        f"{victim}'s member should have answered {client}'s clients before it stopped and turned them away "
        f"after; their tally: {tally}")
    assert not tally["unknown"] and not tally["error"], (
        f"{victim}'s etcd member, stopping, answered its clients errors where it should have turned them away "
        f"(reset them): {tally['unknown']} request(s) or watch(es) with gRPC Unknown (code {dcs_clients.GRPC_UNKNOWN}), "
        f"which Patroni does not retry (a leader whose client that was demotes itself), and {tally['error']} with "
        f"another error (a watch cut with code 13 where the member stops undrained). Is the etcd role's drain "
        f"(etcd_drain_table) in its unit? Tally: {tally}")
