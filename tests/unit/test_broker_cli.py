"""`iotstream broker` commands and the account rules behind them."""

from __future__ import annotations

import csv
import io
import stat
from pathlib import Path

import pytest

from iotstream.broker_tools import PasswordFile, PasswordFileError
from iotstream.broker_tools.accounts import add_devices, is_service_account, numbered_ids
from iotstream.broker_tools.connection import DeviceConnection
from iotstream.broker_tools.dynsec import DynsecFile
from iotstream.cli import main


def test_numbered_ids_are_zero_padded() -> None:
    assert numbered_ids("pump-", 3) == ["pump-0001", "pump-0002", "pump-0003"]
    assert numbered_ids("d", 2, start=99999) == ["d099999", "d100000"]  # ids sort


@pytest.mark.parametrize(
    "bad", [["worker"], ["admin"], ["bridge-site9"], ["a/b"], ["+"], ["ok", "ok"], [""]]
)
def test_add_devices_refuses_reserved_invalid_or_repeated_ids(
    tmp_path: Path, bad: list[str]
) -> None:
    passwords = PasswordFile(tmp_path / "passwd")
    rights = DynsecFile(tmp_path / "dynsec.json")
    with pytest.raises(PasswordFileError):
        add_devices(passwords, ["fine-1", *bad], rights)
    assert passwords.users == [] and rights.users == []  # all or nothing


def test_service_account_names() -> None:
    assert is_service_account("worker") and is_service_account("bridge-site1")
    assert not is_service_account("pump-1") and not is_service_account("bridge-")


def _csv(text: str) -> dict[str, str]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["device_id", "secret"]
    return dict(rows[1:])


def test_add_rotate_revoke_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passwd, dynsec = tmp_path / "passwd", tmp_path / "dynsec.json"
    files = ["--passwd", str(passwd), "--dynsec", str(dynsec)]
    assert main(["broker", "add-devices", "pump-a", "--count", "2", *files]) == 0
    secrets = _csv(capsys.readouterr().out)
    assert list(secrets) == ["pump-a", "device-0001", "device-0002"]
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert stat.S_IMODE(dynsec.stat().st_mode) == 0o600
    assert all(PasswordFile(passwd).check(d, s) for d, s in secrets.items())
    assert DynsecFile(dynsec).roles_of("pump-a") == ["device:pump-a"]

    assert main(["broker", "add-devices", "pump-a", *files]) == 1
    assert "exists" in capsys.readouterr().err

    assert main(["broker", "rotate", "pump-a", "--passwd", str(passwd)]) == 0
    new_secret = capsys.readouterr().out.strip()
    assert PasswordFile(passwd).check("pump-a", new_secret)
    assert not PasswordFile(passwd).check("pump-a", secrets["pump-a"])

    assert main(["broker", "revoke", "pump-a", *files]) == 0
    assert "pump-a" not in PasswordFile(passwd) and "pump-a" not in DynsecFile(dynsec)
    assert DynsecFile(dynsec).role("device:pump-a") is None
    assert main(["broker", "revoke", "pump-a", *files]) == 1

    assert main(["broker", "add-service", "worker", *files]) == 0
    assert PasswordFile(passwd).check("worker", capsys.readouterr().out.strip())
    assert DynsecFile(dynsec).roles_of("worker") == ["worker"]
    assert main(["broker", "add-service", "pump-b", *files]) == 1


def test_rights_go_to_a_file_or_a_running_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    passwd = ["--passwd", str(tmp_path / "passwd")]
    with pytest.raises(SystemExit):  # one of --dynsec / --broker is required
        main(["broker", "add-devices", "p1", *passwd])
    monkeypatch.delenv("IOTSTREAM_BROKER_ADMIN_PASSWORD", raising=False)
    assert main(["broker", "add-devices", "p1", *passwd, "--broker", "127.0.0.1:1"]) == 1
    assert "IOTSTREAM_BROKER_ADMIN_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("IOTSTREAM_BROKER_ADMIN_PASSWORD", "pw")
    assert main(["broker", "add-devices", "p1", *passwd, "--broker", "127.0.0.1:1"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert not (tmp_path / "passwd").exists()  # nothing written when the rights failed


def test_secrets_file_is_private(tmp_path: Path) -> None:
    out = tmp_path / "secrets.csv"
    files = ["--passwd", str(tmp_path / "pw"), "--dynsec", str(tmp_path / "dynsec.json")]
    assert main(["broker", "add-devices", "p1", *files, "--secrets-out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert list(_csv(out.read_text())) == ["p1"]


def test_config_renders_and_reports_missing_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "config", "production", "--set", "tls_port=18883"]) == 0
    assert "listener 18883 0.0.0.0" in capsys.readouterr().out
    assert main(["broker", "config", "edge"]) == 2
    assert "central_host" in capsys.readouterr().err
    out = tmp_path / "edge.conf"
    argv = ["broker", "config", "edge", "--set", "central_host=c.example", "-o", str(out)]
    assert main([*argv, "--set", "bridge_password=pw"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # holds the bridge password
    assert main(["broker", "config", "--list-vars"]) == 0
    assert "bridge_protocol_version" in capsys.readouterr().out


def test_certs_commands_build_a_working_chain(tmp_path: Path) -> None:
    from iotstream.broker_tools.certs import load_issued

    assert main(["broker", "certs", "ca", "--dir", str(tmp_path), "--days", "2"]) == 0
    assert main(["broker", "certs", "ca", "--dir", str(tmp_path)]) == 1  # never replaced
    assert main(["broker", "certs", "server", "--dir", str(tmp_path), "--host", "m.example"]) == 0
    assert main(["broker", "certs", "client", "pump-1", "--dir", str(tmp_path)]) == 0
    ca = load_issued(tmp_path, "ca").certificate
    for name in ("server", "pump-1"):
        load_issued(tmp_path, name).certificate.verify_directly_issued_by(ca)


@pytest.mark.parametrize("kind", [["server", "--host", "m.example"], ["client", "pump-1"]])
def test_certs_without_a_usable_ca_say_what_to_do(
    kind: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "certs", *kind, "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"no CA in {tmp_path} (ca.crt missing)" in err
    assert f"`iotstream broker certs ca --dir {tmp_path}`" in err
    (tmp_path / "ca.crt").write_text("not a certificate")
    (tmp_path / "ca.key").write_text("not a key")
    assert main(["broker", "certs", *kind, "--dir", str(tmp_path)]) == 1
    assert f"cannot use the CA in {tmp_path}" in capsys.readouterr().err
    assert not list(tmp_path.glob("server.*")) and not list(tmp_path.glob("pump-1.*"))


@pytest.mark.parametrize("op", ["rotate", "revoke"])
def test_rotate_and_revoke_name_a_missing_password_file(
    op: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passwd = tmp_path / "passwd"
    rights = ["--dynsec", str(tmp_path / "dynsec.json")] if op == "revoke" else []
    assert main(["broker", op, "pump-1", "--passwd", str(passwd), *rights]) == 1
    assert f"no password file at {passwd}" in capsys.readouterr().err
    assert not passwd.exists()


def test_connect_info_prints_settings_and_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["broker", "connect-info", "pump-1", "--host", "m.example", "--cert-dir", "certs"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "username:          pump-1" in out
    assert "--cert certs/pump-1.crt --key certs/pump-1.key" in out
    assert '-P "$DEVICE_SECRET"' in out and "-t devices/pump-1/telemetry" in out
    assert main(["broker", "connect-info", "bad/id", "--host", "h"]) == 2


def test_connection_argv_puts_the_secret_only_where_asked() -> None:
    info = DeviceConnection("pump-1", "h")
    assert "$DEVICE_SECRET" in info.mosquitto_pub_argv("m")
    assert "real" in info.mosquitto_pub_argv("m", "real")


def test_broker_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["broker", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for sub in ("config", "add-devices", "rotate", "revoke", "certs", "connect-info"):
        assert sub in out
