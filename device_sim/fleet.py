"""A fleet of simulated devices on one thread.

All MQTT connections share one selector loop (paho's external-loop API: socket open/close
and write-interest callbacks), so thousands of devices need no thread each. Readings are
scheduled on a heap by due time; each device draws from its own seeded
:class:`iot_models.sensors.Machine`, so the ground-truth label travels with every reading.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device_sim.drift import DeviceDrift, DriftPlan, parse_drift
from device_sim.settings import SimSettings
from iot_contract import (
    MSGPACK_CONTENT_TYPE,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    encode_reading_fields,
    new_boot_id,
    status_topic,
    telemetry_topic,
)
from iot_models.sensors import Machine
from iot_mqtt.connection import MqttEndpoint, make_client

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

__all__ = ["Fleet", "FleetStats", "machine_for"]

log = logging.getLogger(__name__)

MAX_QUEUED_PER_CONNECTION = 10_000
"""Readings a connection may hold unsent or unacknowledged; past it new readings are
dropped and counted (policy: **drop newest**), so a dead broker cannot grow memory."""


def machine_for(settings: SimSettings, index: int) -> Machine:
    """The sensor model of device ``index`` of the fleet ``settings`` describe (the same
    readings and labels every run: tests re-create them to check the pipeline's output)."""
    return Machine(
        seed=settings.seed * 1_000_003 + index,
        mean_time_between_faults_s=settings.mean_time_between_faults,
        fault_duration_s=(settings.fault_duration_min, settings.fault_duration_max),
        steady_start=True,
    )


@dataclass
class FleetStats:
    """Counters the fleet keeps (read by the progress reporter and by tests)."""

    published: int = 0
    """Readings handed to the MQTT client."""
    acked: int = 0
    """Readings the broker acknowledged (QoS 1) or the client wrote out (QoS 0)."""
    status_acked: int = 0
    """Online/offline status messages the broker acknowledged: counted apart, so that
    ``acked`` can be set against ``published``."""
    dropped: int = 0
    reconnects: int = 0
    connected: int = 0
    connections: int = 0


@dataclass
class _Device:
    device_id: str
    machine: Machine
    conn: _Connection | None
    seq: int = 0
    sent: int = 0
    topic: str = ""
    boot: int | None = field(default_factory=new_boot_id)
    """Drawn afresh for every run of the simulator, like a device's boot: ``seq`` starts
    again at 0 and the pipeline tells the runs apart by this id."""

    def __post_init__(self) -> None:
        self.topic = telemetry_topic(self.device_id)


@dataclass
class _Connection:
    client: mqtt.Client
    name: str
    devices: list[_Device] = field(default_factory=list)
    connected: bool = False
    retry_at: float = 0.0
    backoff: float = 0.5


class Fleet:
    """Runs the simulated devices described by ``settings`` until stopped or done."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.stats = FleetStats()
        self._endpoint = MqttEndpoint.from_url(settings.mqtt_url)
        self._sel = selectors.DefaultSelector()
        self._props: Properties | None = None
        if settings.codec == "msgpack" and settings.protocol == "5":
            self._props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            self._props.ContentType = MSGPACK_CONTENT_TYPE
        self._content_type = MSGPACK_CONTENT_TYPE if settings.codec == "msgpack" else None
        self.connections: list[_Connection] = []
        self.devices: list[_Device] = []
        self._stopping = False
        self._status_mids: set[tuple[int, int]] = set()
        """``(id(client), mid)`` of status messages the broker has not acknowledged yet."""
        self._build()
        self._by_client = {id(c.client): c for c in self.connections}
        self._drift: dict[str, DeviceDrift] = {}
        if settings.drift:
            plan = DriftPlan(
                parse_drift(settings.drift), settings.devices, settings.drift_devices, settings.seed
            )
            for device in self.devices:
                found = plan.for_device(int(device.device_id.rsplit("-", 1)[1]))
                if found is not None:
                    self._drift[device.device_id] = found
            log.info(
                "drift %r on %d of %d devices", settings.drift, len(self._drift), settings.devices
            )
        self._started = time.monotonic()

    # --- set-up ------------------------------------------------------------------------
    def _device_ids(self) -> list[str]:
        s = self.settings
        width = len(str(s.devices - 1))
        return [f"{s.device_prefix}-{i:0{width}d}" for i in range(s.devices)]

    def _machine(self, device_id: str) -> Machine:
        return machine_for(self.settings, int(device_id.rsplit("-", 1)[1]))

    def _build(self) -> None:
        s = self.settings
        ids = self._device_ids()
        if s.mode == "devices":
            groups = [[device_id] for device_id in ids]
            names = ids
        else:
            n = min(s.connections, s.devices)
            groups = [ids[k::n] for k in range(n)]
            names = [f"{s.device_prefix}-load-{k}" for k in range(n)]
        for name, group in zip(names, groups, strict=True):
            conn = _Connection(self._client(name, group[0] if s.mode == "devices" else None), name)
            for device_id in group:
                device = _Device(device_id, self._machine(device_id), conn)
                conn.devices.append(device)
                self.devices.append(device)
            self.connections.append(conn)
        self.stats.connections = len(self.connections)

    def _client(self, client_id: str, device_id: str | None) -> mqtt.Client:
        s = self.settings
        client = make_client(
            self._endpoint,
            client_id,
            protocol=s.protocol,
            username=s.username or device_id,
            password=s.password.get_secret_value() if s.password else None,
            ca_file=s.ca_file,
            cert_file=s.cert_file,
            key_file=s.key_file,
            clean_session=False,
        )
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(MAX_QUEUED_PER_CONNECTION)
        if device_id is not None:
            client.will_set(status_topic(device_id), STATUS_OFFLINE, qos=1, retain=True)
        client.on_socket_open = self._sock_open
        client.on_socket_close = self._sock_close
        client.on_socket_register_write = self._sock_want_write
        client.on_socket_unregister_write = self._sock_read_only
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.user_data_set(device_id)
        return client

    # --- external-loop socket callbacks (paho tells us which sockets to watch) -----------
    def _sock_open(self, client: mqtt.Client, _u: Any, sock: SocketLike) -> None:
        self._sel.register(sock, selectors.EVENT_READ, client)

    def _sock_close(self, _c: mqtt.Client, _u: Any, sock: SocketLike) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)

    def _sock_want_write(self, client: mqtt.Client, _u: Any, sock: SocketLike) -> None:
        self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _sock_read_only(self, client: mqtt.Client, _u: Any, sock: SocketLike) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(sock, selectors.EVENT_READ, client)

    # --- paho callbacks ------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, device_id: str | None, _f: Any, rc: ReasonCode, _p: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused %s: %s", client._client_id.decode(), rc)
            return
        self.stats.connected += 1
        conn = self._conn_of(client)
        conn.connected, conn.backoff = True, 0.5
        if device_id is not None:
            self._publish_status(client, device_id, STATUS_ONLINE)

    def _on_disconnect(
        self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any
    ) -> None:
        conn = self._conn_of(client)
        if conn.connected:
            self.stats.connected -= 1
        conn.connected = False
        conn.retry_at = time.monotonic() + conn.backoff
        if not self._stopping:
            log.warning("%s disconnected (%s); reconnecting in %.1fs", conn.name, rc, conn.backoff)

    def _on_publish(self, client: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        if self._status_mids:  # a few a connection, at its connects and at the end
            key = (id(client), mid)
            if key in self._status_mids:
                self._status_mids.remove(key)
                self.stats.status_acked += 1
                return
        self.stats.acked += 1

    def _publish_status(self, client: mqtt.Client, device_id: str, status: bytes) -> None:
        """Publish the device's retained status and remember its packet id, so that its
        acknowledgement is not counted as a reading's."""
        info = client.publish(status_topic(device_id), status, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
            self._status_mids.add((id(client), info.mid))

    def _conn_of(self, client: mqtt.Client) -> _Connection:
        return self._by_client[id(client)]

    # --- running -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> FleetStats:
        """Publish until ``stop`` is set, ``duration`` passes or every device sent ``count``.
        Then mark devices offline, wait briefly for outstanding acks and disconnect."""
        s = self.settings
        self._start()
        start = self._started = time.monotonic()
        end = start + s.duration if s.duration else float("inf")
        interval = 1.0 / s.rate
        # Stagger devices evenly over one interval so the load is smooth.
        order = itertools.count()
        heap = [
            (start + interval * i / len(self.devices), next(order), d)
            for i, d in enumerate(self.devices)
        ]
        heapq.heapify(heap)
        next_misc, next_report = start, start + s.report_every
        while not stop.is_set() and heap:
            now = time.monotonic()
            if now >= end:
                break
            while heap and heap[0][0] <= now:
                due, _, device = heapq.heappop(heap)
                self._publish(device)
                if s.count is None or device.sent < s.count:
                    heapq.heappush(heap, (due + interval, next(order), device))
            timeout = min(heap[0][0] - now, 0.05) if heap else 0.05
            self._pump(max(timeout, 0.0))
            if now >= next_misc:
                self._misc(now)
                next_misc = now + 0.5
            if now >= next_report:
                self._report(now - start)
                next_report = now + s.report_every
        self._shutdown()
        self._report(time.monotonic() - start)
        if s.qos == 1 and (unacked := self.stats.published - self.stats.acked) > 0:
            log.warning(
                "stopped with %d readings the broker never acknowledged: they are lost with "
                "the simulator (a device would have to keep them to send them again)",
                unacked,
            )
        return self.stats

    def _publish(self, device: _Device) -> None:
        features, label = device.machine.step(1.0 / self.settings.rate)
        if self._drift and (drift := self._drift.get(device.device_id)) is not None:
            drift.apply(features, time.monotonic() - self._started)
        payload = encode_reading_fields(
            device.device_id,
            device.seq,
            time.time(),
            features.tolist(),
            boot=device.boot if self.settings.boot_ids else None,
            model=self.settings.model,
            label=label,
            content_type=self._content_type,
        )
        device.seq += 1
        device.sent += 1
        if self._send(device, payload):
            self.stats.published += 1
        else:
            self.stats.dropped += 1

    # --- transport: paho (a subclass may replace these) ------------------------------------
    def _start(self) -> None:
        for conn in self.connections:
            self._connect(conn)

    def _send(self, device: _Device, payload: bytes) -> bool:
        if device.conn is None:  # only subclasses with their own transport leave it unset
            return False
        info = device.conn.client.publish(
            device.topic, payload, qos=self.settings.qos, properties=self._props
        )
        return info.rc != mqtt.MQTT_ERR_QUEUE_SIZE

    def _pump(self, timeout: float) -> None:
        for key, events in self._sel.select(timeout):
            client: mqtt.Client = key.data
            if events & selectors.EVENT_READ:
                client.loop_read()
            if events & selectors.EVENT_WRITE:
                client.loop_write()

    def _misc(self, now: float) -> None:
        for conn in self.connections:
            conn.client.loop_misc()
            if not conn.connected and not self._stopping and now >= conn.retry_at:
                self.stats.reconnects += 1
                conn.backoff = min(conn.backoff * 2, 30.0)
                self._reconnect(conn)

    def _connect(self, conn: _Connection) -> None:
        props = None
        if self.settings.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 300
        conn.retry_at = time.monotonic() + 10.0  # CONNACK deadline before a retry
        try:
            conn.client.connect(
                self._endpoint.host,
                self._endpoint.port,
                keepalive=30,
                clean_start=False if props else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except OSError as exc:
            log.warning("%s could not connect to %s: %s", conn.name, self.settings.mqtt_url, exc)
            conn.retry_at = time.monotonic() + conn.backoff

    def _reconnect(self, conn: _Connection) -> None:
        conn.retry_at = time.monotonic() + max(conn.backoff, 10.0)
        try:
            conn.client.reconnect()
        except OSError as exc:
            log.warning("%s reconnect failed: %s", conn.name, exc)

    def _shutdown(self, ack_timeout: float = 5.0) -> None:
        self._stopping = True
        if self.settings.mode == "devices":
            for conn in self.connections:
                if conn.connected:
                    self._publish_status(conn.client, conn.devices[0].device_id, STATUS_OFFLINE)
        deadline = time.monotonic() + ack_timeout
        while self.settings.qos == 1 and time.monotonic() < deadline:
            done = self.stats.acked >= self.stats.published and not self._status_mids
            if done or not any(c.connected for c in self.connections):
                break
            self._pump(0.02)
            for conn in self.connections:
                conn.client.loop_misc()
        for conn in self.connections:
            if conn.connected:
                conn.client.disconnect()
                conn.client.loop_write()
        self._sel.close()

    def _report(self, elapsed: float) -> None:
        st = self.stats
        rate = st.published / elapsed if elapsed > 0 else 0.0
        log.info(
            "%d/%d connected | sent %d (%.0f/s) | acked %d | dropped %d | reconnects %d",
            st.connected,
            st.connections,
            st.published,
            rate,
            st.acked,
            st.dropped,
            st.reconnects,
        )
