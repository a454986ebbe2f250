"""A target's health and circuit breaker on a clock the test moves (the socket tests in
test_backend_pools.py show the same rules through the gateway)."""

from __future__ import annotations

from tollway.gateway.upstream.health import BreakerSettings, HealthSettings, TargetState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_outside_the_window_do_not_open_the_circuit() -> None:
    clock = Clock()
    state = TargetState("t", None, BreakerSettings(failures=3, window=10, open_for=30), clock)
    for _ in range(2):
        state.report(False)
    clock.now += 11  # the first two are out of the window now
    state.report(False)
    state.report(False)
    assert state.circuit == "closed" and state.available()
    state.report(False)
    assert state.circuit == "open" and not state.available()
    assert state.retry_after() == 30
    clock.now += 29.5
    assert state.retry_after() == 1 and not state.available()


def test_half_open_lets_one_trial_through_at_a_time() -> None:
    clock = Clock()
    state = TargetState("t", None, BreakerSettings(failures=1, window=10, open_for=5), clock)
    state.report(False)
    clock.now += 5
    assert state.available()
    state.take_trial()
    assert state.describe() == {"circuit": "half-open"}
    assert not state.available()  # the trial is out
    clock.now += 5
    assert state.available()  # a trial that never reported is given up after open_for
    state.take_trial()
    state.report(True)
    assert state.describe() == {"circuit": "closed"}


def test_calls_take_a_target_out_and_only_probes_bring_it_back() -> None:
    state = TargetState("t", HealthSettings("/h", interval=5, healthy=2, unhealthy=3), None)
    state.report(False)
    state.report(True)  # a success in between starts the count again
    state.report(False)
    state.report(False)
    assert state.up
    state.report(False)
    assert not state.up and not state.available()
    assert state.retry_after() == 5
    state.report(True)
    assert not state.up  # calls do not bring it back (none go to it anyway)
    state.probe(True)
    assert not state.up
    state.probe(True)
    assert state.up and state.describe() == {"health": "up"}
