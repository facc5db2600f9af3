"""The suites' one capability hook: ``@pytest.mark.needs(...)`` skips, naming the reason, on a
target that lacks a capability, and runs the test where the target has it."""

from __future__ import annotations

import pytest

CONFTEST = """
import types
import pytest

@pytest.fixture(scope="session")
def stack():
    return types.SimpleNamespace(target=types.SimpleNamespace(name="fake", capabilities=frozenset({"isolate"})))
"""

SUITE = """
import pytest

@pytest.mark.needs("crash_vm")
def test_needs_a_crash(stack):
    pass

@pytest.mark.needs("isolate")
def test_needs_isolation(stack):
    pass

def test_needs_nothing():
    pass
"""


@pytest.fixture
def run(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeini("[pytest]\nmarkers =\n    needs: capabilities\n")
    return lambda: pytester.runpytest("-p", "suites.fixtures", "-rs", "-p", "no:cacheprovider")


def test_a_missing_capability_skips_with_the_reason_and_a_present_one_runs(run):
    result = run()
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*target fake lacks capability crash_vm*"])
