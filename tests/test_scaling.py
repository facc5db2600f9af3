"""Scale in's guard (``scaling.retire``): retiring every node would leave no member holding the
data, so it is refused before anything is touched (found in review: it crashed on ``staying[0]``)."""

from __future__ import annotations

import types

import pytest

from deployer import scaling
from deployer.spec import load_spec
from deployer.targets.base import TargetError


def test_retiring_every_node_is_refused_before_anything_is_touched():
    touched = []
    target = types.SimpleNamespace(detach=touched.append)
    deployed = types.SimpleNamespace(target=target, spec=load_spec())
    with pytest.raises(TargetError, match="would retire every node"):
        scaling.retire(deployed, [n.name for n in deployed.spec.nodes])
    assert touched == []
