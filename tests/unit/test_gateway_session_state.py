"""The WebSocket session's state machine: transitions, refusals, timers (no sleeps)."""

from __future__ import annotations

import pytest

from gateway.session_state import (
    CLOSE_CAUSES,
    TRANSITIONS,
    Event,
    IllegalTransitionError,
    SessionMachine,
    State,
    Timeouts,
)
from iot_contract import CloseCode

TIMEOUTS = Timeouts(send=10.0, heartbeat=15.0)


def machine_in(state: State) -> SessionMachine:
    """A machine driven into ``state`` through legal events only."""
    m = SessionMachine()
    path = {
        State.HANDSHAKE: [],
        State.AUTHENTICATING: [Event.ACCEPT_UNAUTHENTICATED],
        State.IDLE: [Event.ACCEPT],
        State.CATCHING_UP: [Event.ACCEPT, Event.SUBSCRIBE],
        State.LIVE: [Event.ACCEPT, Event.SUBSCRIBE, Event.CAUGHT_UP],
        State.CLOSING: [Event.ACCEPT, Event.OVERFLOW],
        State.CLOSED: [Event.ACCEPT, Event.OVERFLOW, Event.CLOSE_DONE],
    }[state]
    for event in path:
        m.fire(event, 0.0)
    assert m.state is state
    return m


def test_header_token_path_to_live_and_back() -> None:
    m = SessionMachine()
    assert m.fire(Event.ACCEPT, 1.0) is State.IDLE
    assert m.fire(Event.SUBSCRIBE, 2.0) is State.CATCHING_UP
    assert m.fire(Event.CAUGHT_UP, 3.0) is State.LIVE
    assert m.fire(Event.SUBSCRIBE, 4.0) is State.CATCHING_UP  # re-subscribe replays again
    assert m.fire(Event.UNSUBSCRIBE, 5.0) is State.IDLE
    assert m.is_open and m.close_code is None


def test_auth_message_path_and_its_failure() -> None:
    m = SessionMachine()
    m.fire(Event.ACCEPT_UNAUTHENTICATED, 0.0)
    assert m.state is State.AUTHENTICATING and not m.is_open
    with pytest.raises(IllegalTransitionError):
        m.fire(Event.SUBSCRIBE, 0.0)  # no subscription before authentication
    m.fire(Event.AUTH_FAILED, 4.0)
    assert (m.state, m.close_code, m.closing_since) == (
        State.CLOSING,
        CloseCode.UNAUTHORIZED,
        4.0,
    )


def test_refused_handshake_ends_closed() -> None:
    m = SessionMachine()
    assert m.fire(Event.REFUSE, 0.0) is State.CLOSED
    with pytest.raises(IllegalTransitionError):
        m.fire(Event.ACCEPT, 0.0)


@pytest.mark.parametrize("cause", sorted(set(CLOSE_CAUSES) - {Event.AUTH_FAILED}, key=str))
@pytest.mark.parametrize("state", [State.IDLE, State.CATCHING_UP, State.LIVE])
def test_every_close_cause_from_every_open_state(state: State, cause: Event) -> None:
    m = machine_in(state)
    assert m.request_close(cause, 3.0)
    assert m.state is State.CLOSING
    assert (m.close_code, m.close_reason) == CLOSE_CAUSES[cause]
    assert m.close_deadline(2.0) == 5.0


def test_first_close_cause_wins() -> None:
    m = machine_in(State.LIVE)
    assert m.request_close(Event.OVERFLOW, 1.0)
    assert not m.request_close(Event.SHUTDOWN, 2.0)
    assert (m.close_code, m.closing_since, m.slow) == (CloseCode.SLOW_CONSUMER, 1.0, True)
    with pytest.raises(IllegalTransitionError):
        m.request_close(Event.SUBSCRIBE, 2.0)  # not a close cause


def test_closing_ends_done_or_aborted_and_closed_is_final() -> None:
    done, aborted = machine_in(State.CLOSING), machine_in(State.CLOSING)
    assert done.fire(Event.CLOSE_DONE, 1.0) is State.CLOSED and not done.aborted
    assert aborted.fire(Event.CLOSE_TIMEOUT, 1.0) is State.CLOSED and aborted.aborted
    for event in Event:
        assert not done.can(event)
    assert not done.request_close(Event.OVERFLOW, 2.0)


def test_closing_allows_only_its_ends() -> None:
    m = machine_in(State.CLOSING)
    allowed = {e for e in Event if m.can(e)}
    assert allowed == {Event.CLOSE_DONE, Event.CLOSE_TIMEOUT, Event.DISCONNECTED}
    with pytest.raises(IllegalTransitionError):
        m.fire(Event.SUBSCRIBE, 0.0)


def test_peer_can_leave_from_every_state_but_closed() -> None:
    for state in State:
        m = machine_in(state)
        assert m.can(Event.DISCONNECTED) is (state is not State.CLOSED)


def test_table_targets_and_causes_are_consistent() -> None:
    for (state, event), nxt in TRANSITIONS.items():
        assert state is not State.CLOSED
        assert (nxt is State.CLOSING) is (event in CLOSE_CAUSES)


def test_sweep_times_out_a_hung_write() -> None:
    m = machine_in(State.LIVE)
    m.write_started(100.0)
    assert m.sweep(now=110.0, wall=0.0, timeouts=TIMEOUTS) is None  # exactly the limit
    assert m.sweep(now=110.5, wall=0.0, timeouts=TIMEOUTS) is Event.SEND_TIMEOUT
    assert (m.state, m.close_code, m.closing_since) == (
        State.CLOSING,
        CloseCode.SLOW_CONSUMER,
        110.5,
    )
    assert m.sweep(now=200.0, wall=0.0, timeouts=TIMEOUTS) is None  # closing: left alone


def test_sweep_closes_an_expired_token() -> None:
    m = machine_in(State.IDLE)
    m.expires_at = 50.0
    assert m.sweep(now=1.0, wall=50.0, timeouts=TIMEOUTS) is None
    assert m.sweep(now=1.0, wall=50.1, timeouts=TIMEOUTS) is Event.TOKEN_EXPIRED
    assert m.close_code == CloseCode.UNAUTHORIZED


def test_sweep_asks_for_a_heartbeat_after_quiet_time_only() -> None:
    m = machine_in(State.LIVE)
    m.write_started(10.0)
    m.write_finished(10.5, ok=True)
    assert m.sweep(now=25.0, wall=0.0, timeouts=TIMEOUTS) is None and not m.heartbeat_due
    assert m.sweep(now=25.5, wall=0.0, timeouts=TIMEOUTS) is None and m.heartbeat_due


def test_failed_write_does_not_count_as_sent() -> None:
    m = machine_in(State.LIVE)
    m.write_finished(5.0, ok=True)
    m.write_started(6.0)
    m.write_finished(7.0, ok=False)
    assert (m.last_send, m.send_started) == (5.0, None)


def test_sweep_leaves_handshake_and_authenticating_alone() -> None:
    for state in (State.HANDSHAKE, State.AUTHENTICATING):
        m = machine_in(state)
        m.expires_at = 0.0
        assert m.sweep(now=1e9, wall=1e9, timeouts=TIMEOUTS) is None
        assert m.state is state
