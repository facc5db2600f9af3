"""Drills under load (Jepsen in pytest), one per catalogue entry (``deployer/drills/catalogue.py``):
steady Locust load through the frontend, direct writers inside the network, the fault on its
victim, held until the expected behaviour is seen, healed; the checkers judge the history. A drill
fails on every promise the spec makes and the run broke (``trial.Trial.failures``): the budget,
one writable primary through the load balancer, convergence, the expected leader (no) change, and
with synchronous replication zero lost writes and no zombie primary. Records in drills.json.
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
def test_drill(stack, drill, extras, request):
    result = trial.run(stack, drill, budget_scale=request.config.option.budget_scale)
    extras.append(pytest_html.extras.html(report.drill_card(result.record)))
    extras.append(pytest_html.extras.png(base64.b64encode(Path(result.record["timeline_plot"]).read_bytes()).decode()))
    assert not result.failures, f"{drill.name}: " + "\n".join(result.failures)
