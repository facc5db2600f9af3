"""Drills under load (Jepsen in pytest), one per catalogue entry (``deployer/drills/catalogue.py``):
a Locust workload writes through the frontend, the fault hits the leader and is healed, and the
checkers judge the history: no acknowledged write lost, never two primaries acknowledging at once,
the write gap within the budget derived from the spec. Records in reports/<stack>/drills.json.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import pytest_html

from deployer.drills import report, trial
from deployer.drills.catalogue import CATALOGUE
from suites.fixtures import drill_params

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("drill", drill_params(CATALOGUE))
def test_drill(stack, drill, extras):
    result = trial.run(stack, drill)
    extras.append(pytest_html.extras.html(report.drill_card(result.record)))
    extras.append(pytest_html.extras.png(base64.b64encode(Path(result.record["timeline_plot"]).read_bytes()).decode()))
    assert result.sets.valid, result.sets.summary
    assert result.writer.valid, result.writer.summary
    assert result.gap.gap_s <= result.budget_s, \
        f"write gap {result.gap.gap_s:.1f} s exceeds the budget {result.budget_s:g} s ({result.gap.summary})"
