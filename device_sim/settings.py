"""Simulator settings, from ``SIM_*`` environment variables or ``iotstream sim`` options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SimSettings"]


class SimSettings(BaseSettings):
    """How the simulated fleet behaves. Each field is ``SIM_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="SIM_", use_attribute_docstrings=True, extra="forbid"
    )

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    """Broker URL: ``mqtt://``, ``mqtts://`` (TLS), ``ws://`` or ``wss://`` (MQTT over
    WebSockets, path ``/mqtt`` unless the URL gives one)."""
    devices: int = Field(default=50, ge=1, le=100_000)
    """Number of simulated devices."""
    rate: float = Field(default=1.0, gt=0)
    """Readings per second per device."""
    device_prefix: str = Field(default="sim", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    """Device ids are ``<prefix>-<n>`` (zero-padded)."""
    mode: Literal["devices", "load"] = "devices"
    """``devices``: one MQTT connection and identity per device, with birth/will status.
    ``load``: all devices multiplexed over ``connections`` connections, for benchmark rates
    (the broker must let that user publish for every device)."""
    connections: int = Field(default=4, ge=1, le=1000)
    """Connections in ``load`` mode."""
    load_client: Literal["paho", "raw"] = "paho"
    """MQTT client in ``load`` mode. ``raw``: a minimal pipelined MQTT 3.1.1 publisher
    (plain ``mqtt://`` only, needs ``protocol`` 3.1.1) that costs a fraction of paho's CPU,
    so a benchmark's load generator leaves the machine to the system under test."""
    qos: Literal[0, 1] = 1
    """Publish QoS. With 1, unacknowledged readings are resent after a reconnect."""
    protocol: Literal["3.1.1", "5"] = "5"
    """MQTT version of the devices."""
    codec: Literal["json", "msgpack"] = "json"
    """Payload encoding; ``msgpack`` sets the MQTT 5 content type (3.1.1 workers sniff it)."""
    model: str | None = None
    """Route key put in each reading (``None``: the workers' default model)."""
    username: str | None = None
    """User name for every connection; default in ``devices`` mode: the device id."""
    password: SecretStr | None = None
    """Password for every connection (the demo broker's throwaway device password)."""
    ca_file: FilePath | None = None
    """CA bundle for TLS URLs."""
    cert_file: FilePath | None = None
    """Client certificate for brokers that require one."""
    key_file: FilePath | None = None
    """Private key of ``cert_file``."""
    boot_ids: bool = True
    """Send a boot id (a new random number every run, per device) with each reading, so
    a restarted simulator's readings are not taken for repeats of the last run's.
    ``False`` plays firmware that sends none (workers count and log such readings)."""
    seed: int = 7
    """Seed of the sensor model: same seed, same readings."""
    mean_time_between_faults: float = Field(default=900.0, gt=0)
    """Mean seconds of healthy running before a device develops a fault. With the default
    fault durations about 7.7 % of the fleet is in fault at any moment:
    mean duration / (this + mean duration) = 75 / 975."""
    fault_duration_min: float = Field(default=30.0, gt=0)
    """Shortest fault episode (seconds); an episode lasts a uniform time between this and
    ``fault_duration_max``, then the machine is repaired."""
    fault_duration_max: float = Field(default=120.0, gt=0)
    """Longest fault episode (seconds)."""
    drift: str | None = None
    """Inject input drift (docs/models.md, "Feature drift"), specs separated by ``;``:
    ``offset:<feature>=<amount>[,ramp=<s>][,start=<s>][,devices=<share>]`` adds a sensor
    offset (in the feature's unit) that grows from 0 at ``start`` to ``amount`` over
    ``ramp`` seconds; ``new-machine-type[,start=<s>][,devices=<share>]`` makes devices read
    like a bigger, slower pump than any in the training data (1000 rpm, 2.5 times the
    currents and flow). Each applies to ``drift_devices`` of the fleet unless it says
    ``devices=``."""
    drift_devices: float = Field(default=0.5, gt=0, le=1)
    """Share of the devices a drift spec applies to (drawn with ``seed``). The PSI a shift
    can cause is bounded by this share: a large offset on 30 % of the fleet measures about
    0.28 against the 5-bin references, on half of it about 0.72."""
    duration: float | None = Field(default=None, gt=0)
    """Stop after this many seconds (``None``: until Ctrl-C)."""
    count: int | None = Field(default=None, ge=1)
    """Stop after this many readings per device (``None``: no limit)."""
    max_inflight: int = Field(default=100, ge=1)
    """Unacknowledged QoS 1 publishes per connection (about 100 measured best)."""
    report_every: float = Field(default=5.0, gt=0)
    """Seconds between progress lines."""

    @model_validator(mode="after")
    def _fault_durations(self) -> SimSettings:
        if self.fault_duration_min > self.fault_duration_max:
            raise ValueError("fault_duration_min is larger than fault_duration_max")
        if self.drift is not None:
            from device_sim.drift import parse_drift

            parse_drift(self.drift)  # a bad spec fails here, with what is wrong
        return self

    @field_validator("mqtt_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        from iot_mqtt.connection import check_broker_url  # paho: only once settings are built

        return check_broker_url(value)

    @model_validator(mode="after")
    def _raw_load_client_limits(self) -> SimSettings:
        if self.load_client == "raw":
            problems = []
            if self.mode != "load":
                problems.append("mode must be load")
            if not self.mqtt_url.startswith("mqtt://"):
                problems.append("mqtt_url must be plain mqtt:// (no TLS or WebSockets)")
            if self.protocol != "3.1.1":
                problems.append("protocol must be 3.1.1")
            if problems:
                raise ValueError("load_client raw: " + "; ".join(problems))
        return self
