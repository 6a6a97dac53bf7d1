"""What a device needs to connect: host, ports, username, CA, and a command to try it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from iot_contract import inference_topic, telemetry_topic, validate_device_id

__all__ = ["SECRET_PLACEHOLDER", "DeviceConnection"]

SECRET_PLACEHOLDER = "$DEVICE_SECRET"  # noqa: S105 - a shell variable name, not a secret


@dataclass(frozen=True)
class DeviceConnection:
    """Connection settings for one device on the production broker.

    Attributes:
        device_id: the device id, which is also its MQTT username.
        host: broker host name; must be in the server certificate's SAN.
        tls_port: MQTT over TLS port.
        ca_file: CA certificate that signed the broker's certificate.
        cert_file: the device's client certificate (when the listener requires one).
        key_file: the client certificate's private key.
        ws_url: MQTT over WebSockets URL for browser devices, if offered.
    """

    device_id: str
    host: str
    tls_port: int = 8883
    ca_file: Path = Path("ca.crt")
    cert_file: Path | None = None
    key_file: Path | None = None
    ws_url: str | None = None

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)

    def mosquitto_pub_argv(self, message: str, password: str | None = None) -> list[str]:
        """A ``mosquitto_pub`` command that publishes ``message`` as this device (QoS 1, v5).

        Without ``password`` the argv holds :data:`SECRET_PLACEHOLDER` in its place.
        """
        secret = password or SECRET_PLACEHOLDER
        argv = [
            "mosquitto_pub", "-h", self.host, "-p", str(self.tls_port), "-V", "mqttv5",
            "--cafile", str(self.ca_file), "-u", self.device_id, "-P", secret,
            "-i", self.device_id, "-q", "1", "-t", telemetry_topic(self.device_id), "-m", message,
        ]  # fmt: skip
        if self.cert_file and self.key_file:
            argv[argv.index("-u") : argv.index("-u")] = [
                "--cert", str(self.cert_file), "--key", str(self.key_file),
            ]  # fmt: skip
        return argv

    def describe(self) -> str:
        """Human-readable settings plus an example command (the secret stays a variable)."""
        example = (
            '{"schema_version": 1, "device_id": "'
            + self.device_id
            + '", "seq": 1, "ts": 1764129600.0, "features": [0.1, 0.2]}'
        )
        argv = self.mosquitto_pub_argv(example)
        command = " ".join(
            f'"{part}"' if part == SECRET_PLACEHOLDER else shlex.quote(part) for part in argv
        )
        lines = [
            f"host:              {self.host}",
            f"port (MQTT/TLS):   {self.tls_port}",
            f"username:          {self.device_id}",
            "password:          the device's secret (from `iotstream broker add-devices`)",
            f"client id:         {self.device_id} (stable; clean start off for QoS 1 resend)",
            f"CA certificate:    {self.ca_file}",
            f"client cert/key:   {self.cert_file or '-'} / {self.key_file or '-'}",
            f"publish to:        {telemetry_topic(self.device_id)} (QoS 1)",
            f"subscribe to:      {inference_topic(self.device_id)}",
        ]
        if self.ws_url:
            lines.append(f"WebSockets:        {self.ws_url}")
        lines += ["", "try it:", f"  {command}"]
        return "\n".join(lines)
