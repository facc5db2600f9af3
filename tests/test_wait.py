"""wait_until: polls to a deadline and fails naming expected, seen and waited."""

import itertools

import pytest

from deployer.wait import WaitTimeout, wait_until


def test_returns_the_first_value_that_satisfies():
    counter = itertools.count()
    assert wait_until("a count above 2", lambda: next(counter), lambda v: v > 2, timeout=5, interval=0.01) == 3


def test_timeout_names_expected_last_seen_and_waited():
    with pytest.raises(WaitTimeout) as err:
        wait_until("the moon", lambda: 1 / 0, timeout=0.2, interval=0.05)
    text = str(err.value)
    assert text.startswith("expected the moon; last seen: ZeroDivisionError") and "waited 0." in text


def test_the_multiplier_scales_every_deadline(monkeypatch):
    monkeypatch.setenv("PGHA_TIMEOUT_MULTIPLIER", "3")
    with pytest.raises(WaitTimeout, match=r"deadline 0.3 s"):
        wait_until("never", lambda: False, timeout=0.1, interval=0.05)
