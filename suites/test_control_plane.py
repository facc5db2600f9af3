"""A control plane only the stack can drive: from a host of the network that is none of the
cluster's nodes, every unsafe call to Patroni, etcd and HAProxy is refused, without credentials and
with wrong ones, as probes observe it (``deployer.control_plane``)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid

import pytest

from deployer import control_plane
from deployer.inventory import role_defaults

pytestmark = [pytest.mark.acceptance, pytest.mark.needs("neighbour")]


def test_from_a_neighbour_in_the_network_every_unsafe_call_is_refused(stack):
    """Also checks the probes could have failed: each call to a port the spec's NSG admits from the
    network must have reached the node (an answer, or a refused connection), never timed out."""
    address, prefix = stack.target.neighbour_vantage()
    patroni = role_defaults()["patroni"]
    leader_key = f"{patroni['patroni_namespace'].rstrip('/')}/{stack.spec.patroni.scope}/leader"
    calls = control_plane.calls(stack.spec, leader_key, f"/pgha-probe/{uuid.uuid4().hex}")
    env = {**os.environ, control_plane.WRONG_AUTH_ENV: f"{patroni['patroni_restapi_username']}:{secrets.token_hex(16)}"}
    out = subprocess.run([*prefix, sys.executable, "-m", "deployer.netprobe", "batch"], env=env, timeout=120,
                         input=json.dumps([list(c.probe) for c in calls]), capture_output=True, text=True)
    assert out.returncode == 0, f"the probes did not run at the neighbour {address}: {out.stderr.strip()[-500:]}"
    answers = json.loads(out.stdout)
    holes = [h for c, a in zip(calls, answers) if (h := control_plane.hole(c, a))]
    blind = [b for c, a in zip(calls, answers)
             if (b := control_plane.unreached(c, a, stack.spec.admits("VirtualNetwork", address, c.port)))]
    assert not blind, f"from {address}, calls the NSG should let through never arrived:\n" + "\n".join(blind)
    assert not holes, (f"{len(holes)} unsafe call(s) from {address} (a host of the network, none of the cluster's) "
                       f"not refused: {holes[0]}\n" + "\n".join(holes[1:]))
