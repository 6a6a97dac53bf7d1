"""MQTT in: a shared subscription feeding a bounded buffer, acknowledged on request.

paho's network thread only wraps the messages of each socket read and puts them in a
bounded buffer. When it is full that thread waits (policy: **backpressure**): it stops
reading the socket, so unacknowledged QoS 1 readings stay with the broker instead of piling
up in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Self, cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from inference_worker.buffer import BoundedBuffer
from inference_worker.bus import BufferedIntake, Incoming, Pump, SourceError
from inference_worker.settings import WorkerSettings
from iot_contract import shared_subscription, telemetry_filter
from iot_mqtt.connection import MqttEndpoint, make_client
from iot_mqtt.paho_client import WorkerClient
from iot_mqtt.wire import Publish

__all__ = ["MqttSource", "MqttSourceError"]

log = logging.getLogger(__name__)


class MqttSourceError(SourceError):
    """The broker could not be reached or refused the worker."""


class MqttSource(BufferedIntake):
    """Receives telemetry through ``$share/<group>/devices/+/telemetry`` (``shared=False``:
    through ``devices/+/telemetry``, every reading, as the staged intake does).

    Use as a context manager: entering connects (persistent session, manual acks) and
    subscribes; exiting unsubscribes and disconnects. paho reconnects by itself and the
    subscription is renewed on every connect.
    """

    def __init__(self, settings: WorkerSettings, *, shared: bool = True) -> None:
        self.settings = settings
        self._topic_filter = (
            shared_subscription(settings.share_group) if shared else telemetry_filter()
        )
        self.buffer: BoundedBuffer[Incoming] = BoundedBuffer(settings.queue_size)
        self.connected = threading.Event()
        self.generation = 0
        self.blocked_seconds = 0.0
        self._closing = False
        self._subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        endpoint = MqttEndpoint.from_url(settings.mqtt_url)
        self._v5 = settings.mqtt_protocol == "5"
        self.client = cast(
            WorkerClient,
            make_client(
                endpoint,
                settings.worker_id,
                protocol=settings.mqtt_protocol,
                username=settings.mqtt_username,
                password=settings.mqtt_password.get_secret_value()
                if settings.mqtt_password
                else None,
                ca_file=settings.mqtt_ca_file,
                cert_file=settings.mqtt_cert_file,
                key_file=settings.mqtt_key_file,
                manual_ack=settings.qos == 1,
                clean_session=False,
                client_class=WorkerClient,
            ),
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message  # what paho's own reader still delivers
        self.client.on_publishes = self._on_publishes
        self.client.read_interval = settings.read_interval_ms / 1000
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_unsubscribe = lambda *_args: self._unsubscribed.set()
        self._endpoint = endpoint
        self._pump: Pump | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        """Connect and subscribe; raise MqttSourceError if that does not happen in time."""
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.settings.session_expiry
            props.ReceiveMaximum = self.settings.receive_maximum
        self.client.connect_async(
            self._endpoint.host,
            self._endpoint.port,
            keepalive=self.settings.keepalive,
            clean_start=False if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.client.loop_stop()
            error = self.client.last_network_error
            why = (
                f"last network error: {type(error).__name__}: {error}"
                if error is not None
                else "broker down, wrong credentials, or ACL refusing the shared subscription"
            )
            raise MqttSourceError(
                f"no subscription to {self.settings.mqtt_url} within {timeout:.0f}s ({why})"
            )

    def unsubscribe(self, timeout: float = 5.0) -> bool:
        """Stop new readings from coming to this worker (the first step of a graceful stop).

        Returns whether the broker confirmed; readings it sent before confirming are already
        in the buffer then.
        """
        self._closing = True
        self._unsubscribed.clear()
        rc, _mid = self.client.unsubscribe(self._filter)
        return rc == mqtt.MQTT_ERR_SUCCESS and self._unsubscribed.wait(timeout)

    def close(self) -> None:
        """Disconnect and stop the network thread (acks must be sent before this)."""
        self._closing = True
        self.buffer.close()  # a network thread waiting for room must not block the stop
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self.client.close_sockets()

    # --- data path -----------------------------------------------------------------------
    def ready(self) -> bool:
        """Connected to the broker (paho renews the subscription on every connect)."""
        return self.connected.is_set()

    def reply(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 0 (a device that is offline misses it: the next one replaces it)."""
        self.client.publish(topic, payload, qos=0)

    def ack(self, items: Iterable[Incoming]) -> int:
        """Acknowledge QoS 1 messages; those from an earlier connection are left alone
        (the broker redelivers them and deduplication absorbs the repeat). Returns how many
        were acknowledged."""
        generation = self.generation
        return self.client.ack_many(
            item.mid for item in items if item.qos == 1 and item.generation == generation
        )

    def drive(self, pump: Pump | None) -> bool:
        """Run ``pump`` on paho's network thread after each socket read's hand-over and at
        the times it asks for (the client's ``select`` waits no longer); None: stop."""
        self._pump = pump
        self.client.on_timer = pump
        if pump is None:
            self.client.timer_at = None
        return True

    @property
    def _filter(self) -> str:
        return self._topic_filter

    # --- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        _u: Any,
        flags: mqtt.ConnectFlags,
        rc: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if rc.is_failure:
            log.error("broker %s refused the connection: %s", self.settings.mqtt_url, rc)
            return
        self.generation += 1
        self.connected.set()
        self.client.last_network_error = None
        log.info(
            "connected to %s as %s (MQTT %s, session present: %s)",
            self.settings.mqtt_url,
            self.settings.worker_id,
            self.settings.mqtt_protocol,
            flags.session_present,
        )
        if not self._closing:
            client.subscribe(self._filter, qos=self.settings.qos)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        error = self.client.last_network_error
        log.warning(
            "cannot connect to %s (%s); paho retries with backoff",
            self.settings.mqtt_url,
            f"{type(error).__name__}: {error}" if error else "connection failed",
        )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(code.is_failure for code in codes):
            log.error("subscription to %s refused: %s", self._filter, codes)
            return
        log.info("subscribed to %s", self._filter)
        self._subscribed.set()

    def _on_disconnect(
        self,
        _c: mqtt.Client,
        _u: Any,
        _f: mqtt.DisconnectFlags,
        rc: ReasonCode,
        _p: Properties | None,
    ) -> None:
        self.connected.clear()
        if not self._closing:
            error = self.client.last_network_error
            log.warning(
                "disconnected from %s (%s); paho reconnects",
                self.settings.mqtt_url,
                f"{type(error).__name__}: {error}" if error else rc,
            )

    def _on_publishes(self, publishes: list[Publish], *, fast: bool = True) -> None:
        now, queued_at = time.time(), time.monotonic()
        generation = self.generation
        # the read's readings arrived one after another since its bytes began to wait
        since = self.client.read_since if fast else 0.0
        if not 0 < since <= queued_at:
            since = 0.0
        step = (queued_at - since) / (len(publishes) + 1)
        items = [
            Incoming(
                p.topic,
                p.payload,
                p.content_type,
                p.mid,
                p.qos,
                now,
                generation,
                None,
                queued_at,
                since + step * k if since else 0.0,
            )
            for k, p in enumerate(publishes, 1)
        ]
        # Backpressure: when the buffer is full the network thread waits for room, so it
        # stops reading and unacknowledged readings stay with the broker.
        self.blocked_seconds += self.buffer.put_many(items)
        if (pump := self._pump) is not None:
            self.client.set_timer(pump())

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """The few messages paho's own handlers deliver (see iot_mqtt.wire.Control)."""
        content_type = None
        if self._v5 and msg.properties is not None:
            content_type = getattr(msg.properties, "ContentType", None)
        self._on_publishes(
            [Publish(msg.topic, cast(bytes, msg.payload), content_type, msg.mid, msg.qos)],
            fast=False,
        )
