"""The simulator's load mode on :class:`~iot_mqtt.rawpub.RawPublisher` connections
(``iotstream sim --mode load --load-client raw``): the same devices, schedule, payloads
and counters as :class:`~device_sim.fleet.Fleet`, at a fraction of paho's CPU cost."""

from __future__ import annotations

import logging
import selectors
import socket
import time

from device_sim.fleet import Fleet, _Device
from iot_mqtt.connection import MqttEndpoint
from iot_mqtt.rawpub import RawPublisher, RawPublisherError

__all__ = ["RawLoadFleet"]

log = logging.getLogger(__name__)

MIN_TICK_S = 0.001
"""Shortest wait between writes: readings due within one tick share a write."""
WINDOW_WAIT_S = 5.0
"""How long a reading waits for room in a full QoS 1 window before it is dropped."""


class RawLoadFleet(Fleet):
    """Load mode over plain-TCP MQTT 3.1.1 connections that only publish."""

    def _build(self) -> None:
        s = self.settings
        endpoint = MqttEndpoint.from_url(s.mqtt_url)
        n = min(s.connections, s.devices)
        password = s.password.get_secret_value() if s.password else None
        self._links = [
            RawPublisher(
                endpoint.host,
                endpoint.port,
                f"{s.device_prefix}-load-{k}",
                username=s.username,
                password=password,
                max_inflight=s.max_inflight,
            )
            for k in range(n)
        ]
        self._link_of: dict[str, RawPublisher] = {}
        self._retry_at = [0.0] * n
        self._topics: dict[str, bytes] = {}
        for i, device_id in enumerate(self._device_ids()):
            device = _Device(device_id, self._machine(device_id), None)
            self._link_of[device_id] = self._links[i % n]
            self._topics[device_id] = device.topic.encode()
            self.devices.append(device)
        self.stats.connections = n
        self._watched: dict[str, socket.socket] = {}

    def _start(self) -> None:
        for k in range(len(self._links)):
            self._open(k)

    def _open(self, k: int) -> None:
        link = self._links[k]
        try:
            link.connect()
        except RawPublisherError as exc:
            self._retry_at[k] = time.monotonic() + 1.0
            log.warning("%s: %s", link.client_id, exc)
        self.stats.connected = sum(x.connected for x in self._links)

    def _send(self, device: _Device, payload: bytes) -> bool:
        link = self._link_of[device.device_id]
        topic = self._topics[device.device_id]
        deadline = time.monotonic() + WINDOW_WAIT_S
        while not link.publish(topic, payload, self.settings.qos):
            now = time.monotonic()
            if now > deadline:
                return False
            self._pump(0.01)
            self._misc(now)  # a full window on a dropped link frees only once reconnected
        return True

    def _pump(self, timeout: float) -> None:
        # Ticks of at least 1 ms: readings due within a tick go out in one write per link
        # instead of a write and a select per reading.
        timeout = max(timeout, MIN_TICK_S)
        # One long-lived selector; a link's socket is swapped in when it reconnects.
        for link in self._links:
            link.flush()
            self._watch(link)
        if not self._sel.get_map():
            time.sleep(timeout)
            return
        for key, events in self._sel.select(timeout):
            link = key.data
            if events & selectors.EVENT_READ:
                self.stats.acked += link.read()
            if events & selectors.EVENT_WRITE:
                link.flush()
            self._watch(link)

    def _watch(self, link: RawPublisher) -> None:
        old, sock = self._watched.get(link.client_id), link.sock
        if old is not None and old is not sock:
            self._sel.unregister(old)  # closed: selectors finds it by object
            del self._watched[link.client_id]
            old = None
        if sock is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.wants_write() else 0)
        if old is None:
            self._sel.register(sock, events, link)
            self._watched[link.client_id] = sock
        elif self._sel.get_key(sock).events != events:
            self._sel.modify(sock, events, link)

    def _misc(self, now: float) -> None:
        for k, link in enumerate(self._links):
            link.keep_alive(now)
            if not link.connected and now >= self._retry_at[k]:
                self.stats.reconnects += 1
                self._open(k)
        self.stats.connected = sum(x.connected for x in self._links)

    def _shutdown(self, ack_timeout: float = 5.0) -> None:
        self._stopping = True
        deadline = time.monotonic() + ack_timeout
        while self.settings.qos == 1 and time.monotonic() < deadline:
            if self.stats.acked >= self.stats.published:
                break
            if not any(link.connected for link in self._links):
                break
            self._pump(0.02)
        for link in self._links:
            link.close()
        self.stats.connected = 0
        self._sel.close()
