"""Teardown tells the truth (``-m teardown``, runs last or alone): the stack goes, and the target
finds nothing of it left."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.teardown


def test_teardown_leaves_nothing_behind(stack):
    proc = subprocess.run([sys.executable, "-m", "deployer.cli", "down", "--name", stack.state.name],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"deployer down exited {proc.returncode}: {proc.stderr[-2000:]}"
    left = stack.target.leftovers()
    assert left == [], f"after teardown the target still finds: {left}"
