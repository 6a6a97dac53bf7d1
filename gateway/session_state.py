"""The life of one ``/ws`` connection as an explicit state machine (diagram in
``docs/websocket.md``). Pure: no I/O, the clock is a parameter.

The route drives the handshake (``HANDSHAKE`` → ``AUTHENTICATING`` → ``IDLE``), the session and
its channel drive the subscription (``IDLE`` ⇄ ``CATCHING_UP`` → ``LIVE``), and any of them, the
hub or the sweep can ask to close. A close has a cause (an :class:`Event` with a close code in
:data:`CLOSE_CAUSES`); the first cause wins, later ones are ignored. From ``CLOSING`` the
connection has ``close_timeout`` seconds to finish the close handshake; after that it is
aborted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from iot_contract import CloseCode

__all__ = [
    "CLOSE_CAUSES",
    "TRANSITIONS",
    "Event",
    "IllegalTransitionError",
    "SessionMachine",
    "State",
    "Timeouts",
]


class State(enum.Enum):
    """Where a connection is."""

    HANDSHAKE = "handshake"
    """Upgrade request received; Origin, connection limit and header token are checked."""
    AUTHENTICATING = "authenticating"
    """Accepted without a header token; waiting for the ``auth`` message."""
    IDLE = "idle"
    """Authenticated, not subscribed (also after ``unsubscribe``)."""
    CATCHING_UP = "catching_up"
    """Subscribed; the replay or snapshot is being queued, live items wait behind it."""
    LIVE = "live"
    """Subscribed and caught up: live items go out as they arrive."""
    CLOSING = "closing"
    """A close was decided; the close frame and the peer's answer get ``close_timeout``."""
    CLOSED = "closed"
    """Gone: refused, closed by either side, or aborted after the close timeout."""


OPEN_STATES: Final = frozenset({State.IDLE, State.CATCHING_UP, State.LIVE})
"""States in which frames flow."""


class Event(enum.Enum):
    """What happens to a connection."""

    ACCEPT = "accept"
    """The handshake is accepted with a valid header token."""
    ACCEPT_UNAUTHENTICATED = "accept_unauthenticated"
    """The handshake is accepted without a header token."""
    REFUSE = "refuse"
    """Foreign Origin, too many connections or a bad header token: HTTP 403, no WebSocket."""
    AUTHENTICATED = "authenticated"
    """A valid ``auth`` message arrived."""
    SUBSCRIBE = "subscribe"
    """A ``subscribe`` was accepted: its replay starts."""
    CAUGHT_UP = "caught_up"
    """The replay or snapshot is queued; live items are released."""
    UNSUBSCRIBE = "unsubscribe"
    """An ``unsubscribe``."""
    AUTH_FAILED = "auth_failed"
    """No valid ``auth`` message within ``auth_timeout_s``."""
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - an event name, not a secret
    """The token's ``exp`` passed."""
    FORBIDDEN = "forbidden"
    """A subscription names a device the token does not allow."""
    BAD_MESSAGE = "bad_message"
    """A control message was not JSON or too large."""
    OVERFLOW = "overflow"
    """The send queue overflowed under the ``disconnect`` policy."""
    SEND_TIMEOUT = "send_timeout"
    """A write hung longer than ``send_timeout_s``."""
    UNAVAILABLE = "unavailable"
    """Redis is unreachable."""
    STREAM_RESET = "stream_reset"
    """The stream was reset (new epoch): every offset is void."""
    SHUTDOWN = "shutdown"
    """The gateway is stopping."""
    CLOSE_DONE = "close_done"
    """The transport is closed after our close frame (the peer answered or left)."""
    CLOSE_TIMEOUT = "close_timeout"
    """The close did not finish within ``close_timeout_s``: the connection is aborted."""
    DISCONNECTED = "disconnected"
    """The peer closed or the connection was lost."""


CLOSE_CAUSES: Final[dict[Event, tuple[CloseCode, str]]] = {
    Event.AUTH_FAILED: (CloseCode.UNAUTHORIZED, "unauthorized"),
    Event.TOKEN_EXPIRED: (CloseCode.UNAUTHORIZED, "token expired"),
    Event.FORBIDDEN: (CloseCode.FORBIDDEN, "device not allowed"),
    Event.BAD_MESSAGE: (CloseCode.BAD_REQUEST, "bad control message"),
    Event.OVERFLOW: (CloseCode.SLOW_CONSUMER, "slow consumer"),
    Event.SEND_TIMEOUT: (CloseCode.SLOW_CONSUMER, "send timed out"),
    Event.UNAVAILABLE: (CloseCode.GOING_AWAY, "stream not reachable"),
    Event.STREAM_RESET: (CloseCode.GOING_AWAY, "stream reset"),
    Event.SHUTDOWN: (CloseCode.GOING_AWAY, "gateway shutting down"),
}
"""Events that start a close, with the close code and reason sent."""


def _table() -> dict[tuple[State, Event], State]:
    table: dict[tuple[State, Event], State] = {
        (State.HANDSHAKE, Event.ACCEPT): State.IDLE,
        (State.HANDSHAKE, Event.ACCEPT_UNAUTHENTICATED): State.AUTHENTICATING,
        (State.HANDSHAKE, Event.REFUSE): State.CLOSED,
        (State.AUTHENTICATING, Event.AUTHENTICATED): State.IDLE,
        (State.AUTHENTICATING, Event.AUTH_FAILED): State.CLOSING,
        (State.AUTHENTICATING, Event.SHUTDOWN): State.CLOSING,
        (State.CATCHING_UP, Event.CAUGHT_UP): State.LIVE,
        (State.CLOSING, Event.CLOSE_DONE): State.CLOSED,
        (State.CLOSING, Event.CLOSE_TIMEOUT): State.CLOSED,
    }
    for state in OPEN_STATES:
        table[state, Event.SUBSCRIBE] = State.CATCHING_UP
        table[state, Event.UNSUBSCRIBE] = State.IDLE
        for cause in CLOSE_CAUSES:
            if cause is not Event.AUTH_FAILED:
                table[state, cause] = State.CLOSING
    for state in State:
        if state is not State.CLOSED:
            table[state, Event.DISCONNECTED] = State.CLOSED
    return table


TRANSITIONS: Final = _table()
"""``(state, event) -> next state``; every pair not listed is illegal."""


class IllegalTransitionError(RuntimeError):
    """An event that the current state does not allow (a bug in the caller)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The timers the sweep applies (seconds)."""

    send: float
    """A write in progress longer than this closes the client (``SEND_TIMEOUT``)."""
    heartbeat: float
    """A heartbeat is due after this long without a write."""


@dataclass(eq=False, slots=True)
class SessionMachine:
    """The state of one connection and the timers that move it.

    Attributes:
        state: the current :class:`State`.
        close_code: the close code of the cause that started ``CLOSING`` (``None`` before).
        close_reason: its reason text.
        closing_since: when ``CLOSING`` began (monotonic seconds).
        aborted: the connection ended by ``CLOSE_TIMEOUT``.
        expires_at: when the token expires (epoch seconds).
        last_send: when the last write finished (monotonic seconds).
        send_started: when the write in progress began, ``None`` when not writing.
        heartbeat_due: the sweep asks the sender for a heartbeat.
    """

    state: State = State.HANDSHAKE
    close_code: int | None = None
    close_reason: str = ""
    closing_since: float | None = None
    aborted: bool = False
    expires_at: float = float("inf")
    last_send: float = 0.0
    send_started: float | None = None
    heartbeat_due: bool = False

    def can(self, event: Event) -> bool:
        """Whether ``event`` is allowed now."""
        return (self.state, event) in TRANSITIONS

    def fire(self, event: Event, now: float) -> State:
        """Apply ``event`` at monotonic time ``now``; raise :class:`IllegalTransitionError` if the
        current state does not allow it."""
        try:
            nxt = TRANSITIONS[self.state, event]
        except KeyError:
            raise IllegalTransitionError(f"{event.value} in state {self.state.value}") from None
        if nxt is State.CLOSING:
            self.close_code, self.close_reason = CLOSE_CAUSES[event]
            self.closing_since = now
        if event is Event.CLOSE_TIMEOUT:
            self.aborted = True
        self.state = nxt
        return nxt

    def request_close(self, cause: Event, now: float) -> bool:
        """Start closing for ``cause`` unless a close already started (the first cause wins).
        Returns True when this call started it."""
        if cause not in CLOSE_CAUSES:
            raise IllegalTransitionError(f"{cause.value} is not a close cause")
        if self.state in (State.CLOSING, State.CLOSED):
            return False
        self.fire(cause, now)
        return True

    @property
    def is_open(self) -> bool:
        """Frames flow (``IDLE``, ``CATCHING_UP`` or ``LIVE``)."""
        return self.state in OPEN_STATES

    @property
    def closing_or_closed(self) -> bool:
        """A close was decided (or the connection is gone)."""
        return self.state in (State.CLOSING, State.CLOSED)

    @property
    def slow(self) -> bool:
        """Closing (or closed) as a slow consumer."""
        return self.close_code == CloseCode.SLOW_CONSUMER

    def close_deadline(self, close_timeout: float) -> float:
        """When ``CLOSING`` must be over (monotonic); infinite when not closing. Past it the
        session fires ``CLOSE_TIMEOUT`` and aborts the connection."""
        if self.closing_since is None:
            return float("inf")
        return self.closing_since + close_timeout

    def write_started(self, now: float) -> None:
        """The sender begins a write."""
        self.send_started = now

    def write_finished(self, now: float, *, ok: bool) -> None:
        """The write begun by :meth:`write_started` ended (``ok``: it completed)."""
        self.send_started = None
        if ok:
            self.last_send = now

    def sweep(self, now: float, wall: float, timeouts: Timeouts) -> Event | None:
        """The periodic check (one timer per process, not per write). Returns the event it
        applied, if any: ``SEND_TIMEOUT`` for a hung write, ``TOKEN_EXPIRED`` once ``wall``
        passes :attr:`expires_at`. Sets :attr:`heartbeat_due` after ``timeouts.heartbeat``
        without a write. (``CLOSING`` is timed by the session itself, against
        :meth:`close_deadline`.)"""
        if not self.is_open:
            return None
        if self.send_started is not None and now - self.send_started > timeouts.send:
            self.fire(Event.SEND_TIMEOUT, now)
            return Event.SEND_TIMEOUT
        if wall > self.expires_at:
            self.fire(Event.TOKEN_EXPIRED, now)
            return Event.TOKEN_EXPIRED
        if self.send_started is None and now - self.last_send >= timeouts.heartbeat:
            self.heartbeat_due = True
        return None
