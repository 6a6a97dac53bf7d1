"""``iotstream broker``: Mosquitto configs, device credentials and a development CA."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iotstream.commands.parsers import command_group, subcommand

if TYPE_CHECKING:
    from iotstream.broker_tools.certs import Issued
    from iotstream.broker_tools.dynsec import Permissions

__all__ = ["register"]

_RELOAD_HINT = "reload the broker to apply: systemctl reload mosquitto (or kill -HUP <pid>)"
_RIGHTS_HINT = {
    "file": "rights written to the plugin file: (re)start the broker to apply them",
    "broker": "rights applied to the running broker",
}
_ADMIN_PASSWORD_ENV = "IOTSTREAM_BROKER_ADMIN_PASSWORD"  # noqa: S105 - a variable name

_EPILOG = """\
examples:
  iotstream broker config production --set tls_bind=203.0.113.10 > mosquitto.conf
  iotstream broker add-devices --passwd passwd --dynsec dynamic-security.json \
      --count 100 --prefix pump- > secrets.csv           # broker not started yet
  IOTSTREAM_BROKER_ADMIN_PASSWORD=... iotstream broker add-devices --passwd passwd \
      --broker 10.0.0.5:1883 boiler-7                    # running broker: rights applied live
  iotstream broker rotate pump-0007 --passwd passwd
  iotstream broker revoke pump-0007 --passwd passwd --broker 10.0.0.5:1883
  iotstream broker certs ca --dir certs --days 30
  iotstream broker certs server --dir certs --host mqtt.example.com --host 10.0.0.5
  iotstream broker certs client pump-0007 --dir certs
  iotstream broker connect-info pump-0007 --host mqtt.example.com --ca certs/ca.crt

Guide: docs/broker.md. Config templates: broker/; roles: iotstream/broker_tools/dynsec.py.
"""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``broker`` and its subcommands."""
    sub = command_group(
        subparsers,
        "broker",
        "Mosquitto configs, device credentials, development certificates",
        "Configure and operate the Mosquitto broker (see docs/broker.md).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _register_config(sub)
    _register_accounts(sub)
    _register_certs(sub)
    _register_connect_info(sub)


def _register_config(sub: argparse._SubParsersAction[Any]) -> None:
    config = subcommand(sub, "config", _config)
    config.add_argument(
        "profile", nargs="?", choices=("dev", "production", "edge"),
        help="dev: loopback demo; production: central broker; edge: site broker with bridge",
    )  # fmt: skip
    config.add_argument(
        "--set", dest="values", action="append", default=[], metavar="NAME=VALUE",
        help="set a variable (repeatable)",
    )  # fmt: skip
    config.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    config.add_argument("--list-vars", action="store_true", help="list variables and defaults")
    config.add_argument("--template-dir", type=Path, help="where the templates are (broker/)")


def _register_accounts(sub: argparse._SubParsersAction[Any]) -> None:
    def passwd_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--passwd", type=Path, required=True,
            help="the broker's password file (created if missing, written with mode 0600)",
        )  # fmt: skip

    def rights_args(p: argparse.ArgumentParser) -> None:
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument(
            "--dynsec", type=Path, metavar="FILE",
            help="the dynamic security plugin's file, for a broker not running (mode 0600)",
        )  # fmt: skip
        where.add_argument(
            "--broker", metavar="HOST:PORT",
            help=f"apply rights to this running broker as --admin-user (password in "
            f"${_ADMIN_PASSWORD_ENV})",
        )  # fmt: skip
        p.add_argument("--admin-user", default="admin", help="account used with --broker")

    add = subcommand(sub, "add-devices", _add_devices)
    add.add_argument("device_ids", nargs="*", metavar="DEVICE_ID", help="ids to add")
    add.add_argument("--count", type=int, default=0, help="also add this many numbered ids")
    add.add_argument("--prefix", default="device-", help="prefix of numbered ids")
    add.add_argument("--start", type=int, default=1, help="first number")
    add.add_argument("--secrets-out", type=Path, help="write the CSV here (mode 0600)")
    passwd_arg(add)
    rights_args(add)

    service = subcommand(sub, "add-service", _add_service)
    service.add_argument("name", help="worker, ingest, admin or bridge-<site>")
    passwd_arg(service)
    rights_args(service)

    for name, helptext, detail in (
        (
            "rotate",
            "give a device (or service) a new secret and print it",
            "On reload the old secret stops working and the live connection is closed.",
        ),
        (
            "revoke",
            "remove a device (or service) from the password file",
            "On reload its live connection is closed and reconnects are refused.",
        ),
    ):
        hint = _RELOAD_HINT[0].upper() + _RELOAD_HINT[1:]
        description = f"{helptext[0].upper()}{helptext[1:]}. {detail} {hint}."
        cmd = sub.add_parser(name, help=helptext, description=description)
        cmd.add_argument("username", help="device id or service account")
        passwd_arg(cmd)
        if name == "revoke":
            rights_args(cmd)
        cmd.set_defaults(handler=_rotate if name == "rotate" else _revoke)


def _register_certs(sub: argparse._SubParsersAction[Any]) -> None:
    certs = sub.add_parser(
        "certs",
        help="development CA, server and client certificates",
        description=(
            "A development PKI (ECDSA P-256). Files go to --dir as <name>.crt/<name>.key "
            "(keys mode 0600). For production use your organisation's CA."
        ),
    )
    kinds = certs.add_subparsers(title="kinds", metavar="KIND", required=True)
    ca = kinds.add_parser("ca", help="create ca.crt/ca.key")
    ca.add_argument("--name", default="iotstream dev CA", help="CA common name")
    server = kinds.add_parser("server", help="server.crt/server.key signed by the CA")
    server.add_argument(
        "--host", action="append", default=[],
        help="DNS name or IP the devices dial (repeatable; localhost and 127.0.0.1 are added)",
    )  # fmt: skip
    client = kinds.add_parser("client", help="<name>.crt/<name>.key with CN=<name>")
    client.add_argument("name", help="device id (or bridge-<site>); becomes the CN")
    for kind, days in ((ca, 30), (server, 30), (client, 30)):
        kind.add_argument("--dir", type=Path, required=True, help="where ca.* are and files go")
        kind.add_argument("--days", type=float, default=days, help=f"lifetime (default {days})")
    ca.set_defaults(handler=_certs_ca)
    server.set_defaults(handler=_certs_server)
    client.set_defaults(handler=_certs_client)


def _register_connect_info(sub: argparse._SubParsersAction[Any]) -> None:
    info = subcommand(sub, "connect-info", _connect_info)
    info.add_argument("device_id", help="the device id (its MQTT username and client id)")
    info.add_argument("--host", required=True, help="broker host name (in the server cert SAN)")
    info.add_argument("--tls-port", type=int, default=8883)
    info.add_argument("--ca", type=Path, default=Path("ca.crt"), help="CA certificate path")
    info.add_argument("--cert-dir", type=Path, help="directory with <device_id>.crt/.key")
    info.add_argument("--ws-url", help="MQTT over WebSockets URL, if offered")


def _config(args: argparse.Namespace) -> int:
    """render a mosquitto.conf (dev, production or edge) from broker/

    Print broker/<profile>.conf with its {{...}} placeholders filled from defaults and --set
    values. --list-vars shows every variable.
    """
    from iotstream.broker_tools import BROKER_DIR, VARIABLES, Profile, TemplateError, render_file

    if args.list_vars:
        for var in VARIABLES.values():
            default = "(required)" if var.default is None else var.default
            print(f"{var.name:26} {default:34} {var.help}")
        return 0
    if not args.profile:
        print("give a profile (dev, production, edge) or --list-vars", file=sys.stderr)
        return 2
    values = dict(item.partition("=")[::2] for item in args.values)
    try:
        text = render_file(Profile(args.profile), values, args.template_dir or BROKER_DIR)
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(text)
        args.output.chmod(0o600)
    else:
        sys.stdout.write(text)
    return 0


@contextmanager
def _rights(args: argparse.Namespace) -> Iterator[Permissions]:
    """The plugin file (saved at the end) or a running broker (changes applied at the end)."""
    import os

    from iotstream.broker_tools.dynsec import DynsecFile
    from iotstream.broker_tools.dynsec_control import control_session

    if args.dynsec:
        rights = DynsecFile(args.dynsec)
        yield rights
        rights.save()
        return
    host, _, port = args.broker.rpartition(":")
    password = os.environ.get(_ADMIN_PASSWORD_ENV)
    if not host or not port.isdigit() or password is None:
        raise _UsageError(f"--broker takes HOST:PORT, with the password in ${_ADMIN_PASSWORD_ENV}")
    with control_session(host, int(port), args.admin_user, password) as control:
        yield control


class _UsageError(Exception):
    """Bad arguments found late."""


def _add_devices(args: argparse.Namespace) -> int:
    """create device credentials in bulk

    Add devices to the password file with random secrets and print 'device_id,secret' CSV
    (the only time the secrets are shown). The username is the device id; its own role
    confines it to devices/<id>/...
    """
    import csv
    import io
    import os

    from iotstream.broker_tools import PasswordFile, PasswordFileError
    from iotstream.broker_tools.accounts import add_devices, numbered_ids
    from iotstream.broker_tools.dynsec_control import ControlError

    ids = [*args.device_ids, *numbered_ids(args.prefix, args.count, args.start)]
    if not ids:
        print("nothing to add: give device ids and/or --count", file=sys.stderr)
        return 2
    passwords = PasswordFile(args.passwd)
    try:
        with _rights(args) as rights:
            secrets = add_devices(passwords, ids, rights)
    except (PasswordFileError, ControlError, _UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["device_id", "secret"])
    writer.writerows(secrets.items())
    if args.secrets_out:
        fd = os.open(args.secrets_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(buffer.getvalue())
    else:
        sys.stdout.write(buffer.getvalue())
    passwords.save()
    hint = _RIGHTS_HINT["file" if args.dynsec else "broker"]
    print(
        f"added {len(secrets)} device(s) to {args.passwd}; {hint}; {_RELOAD_HINT}", file=sys.stderr
    )
    return 0


def _account_op(args: argparse.Namespace, op: str) -> int:
    from iotstream.broker_tools import PasswordFile, PasswordFileError, accounts
    from iotstream.broker_tools.dynsec_control import ControlError

    if op in ("rotate", "revoke") and not args.passwd.is_file():
        print(f"error: no password file at {args.passwd} to {op} in", file=sys.stderr)
        return 1
    passwords = PasswordFile(args.passwd)
    hints = [_RELOAD_HINT]
    try:
        if op == "rotate":
            print(accounts.rotate(passwords, args.username))
        else:
            with _rights(args) as rights:
                if op == "revoke":
                    accounts.revoke(passwords, args.username, rights)
                else:
                    print(accounts.add_service(passwords, args.name, rights))
            hints.insert(0, _RIGHTS_HINT["file" if args.dynsec else "broker"])
    except (PasswordFileError, ControlError, _UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    passwords.save()
    print(f"{op}: done; {'; '.join(hints)}", file=sys.stderr)
    return 0


def _add_service(args: argparse.Namespace) -> int:
    """create a service account: worker, ingest, admin or bridge-<site>

    Create or reset a service account with its role; prints its secret.
    """
    return _account_op(args, "add-service")


def _rotate(args: argparse.Namespace) -> int:
    return _account_op(args, "rotate")


def _revoke(args: argparse.Namespace) -> int:
    return _account_op(args, "revoke")


def _certs_ca(args: argparse.Namespace) -> int:
    import datetime as dt

    from iotstream.broker_tools.certs import create_ca

    if (args.dir / "ca.key").exists():
        print(f"error: {args.dir / 'ca.key'} exists; refusing to replace a CA", file=sys.stderr)
        return 1
    paths = create_ca(args.name, dt.timedelta(days=args.days)).write(args.dir, "ca")
    print("\n".join(map(str, paths)))
    return 0


def _certs_server(args: argparse.Namespace) -> int:
    import datetime as dt

    from iotstream.broker_tools.certs import issue_server

    if (ca := _load_ca(args.dir)) is None:
        return 1
    hosts = [*args.host, "localhost", "127.0.0.1"]
    issued = issue_server(ca, hosts, dt.timedelta(days=args.days))
    print("\n".join(map(str, issued.write(args.dir, "server"))))
    return 0


def _certs_client(args: argparse.Namespace) -> int:
    import datetime as dt

    from iotstream.broker_tools.certs import issue_client

    if (ca := _load_ca(args.dir)) is None:
        return 1
    issued = issue_client(ca, args.name, dt.timedelta(days=args.days))
    print("\n".join(map(str, issued.write(args.dir, args.name))))
    return 0


def _load_ca(folder: Path) -> Issued | None:
    """The CA in ``folder`` to sign with; ``None`` (and why, on stderr) when there is none
    or it cannot be read."""
    from iotstream.broker_tools.certs import load_issued

    try:
        return load_issued(folder, "ca")
    except FileNotFoundError as exc:
        print(
            f"error: no CA in {folder} ({Path(str(exc.filename)).name} missing): create one with "
            f"`iotstream broker certs ca --dir {folder}`",
            file=sys.stderr,
        )
    except (OSError, ValueError, TypeError) as exc:  # unreadable, not PEM, not an EC key
        print(f"error: cannot use the CA in {folder}: {exc}", file=sys.stderr)
    return None


def _connect_info(args: argparse.Namespace) -> int:
    """print what a device needs to connect, with a mosquitto_pub example

    Connection settings for one device on the production broker.
    """
    from iot_contract import ContractError
    from iotstream.broker_tools.connection import DeviceConnection

    cert = key = None
    if args.cert_dir:
        cert, key = args.cert_dir / f"{args.device_id}.crt", args.cert_dir / f"{args.device_id}.key"
    try:
        info = DeviceConnection(
            args.device_id, args.host, args.tls_port, args.ca, cert, key, args.ws_url
        )
    except ContractError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    print(info.describe())
    return 0
