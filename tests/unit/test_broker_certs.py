"""The development CA: lifetimes, SANs, chains."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotstream.broker_tools.certs import create_ca, issue_client, issue_server, load_issued

DAY = dt.timedelta(days=1)


def test_ca_is_a_ca_with_the_asked_lifetime() -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    ca = create_ca("test CA", 30 * DAY, not_before=start)
    cert = ca.certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == start + 30 * DAY
    cert.verify_directly_issued_by(cert)


def test_server_certificate_names_every_host_and_chains_to_the_ca() -> None:
    ca = create_ca("test CA", DAY)
    server = issue_server(ca, ["mqtt.example.com", "10.0.0.5", "localhost"], DAY).certificate
    server.verify_directly_issued_by(ca.certificate)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mqtt.example.com", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    with pytest.raises(ValueError, match="host"):
        issue_server(ca, [], DAY)


def test_client_certificate_cn_is_the_device_id() -> None:
    ca = create_ca("test CA", DAY)
    client = issue_client(ca, "pump-7", 2 * DAY).certificate
    client.verify_directly_issued_by(ca.certificate)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pump-7"
    lifetime = client.not_valid_after_utc - client.not_valid_before_utc
    assert lifetime == 2 * DAY
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_foreign_ca_does_not_verify() -> None:
    ours, theirs = create_ca("ours", DAY), create_ca("theirs", DAY)
    client = issue_client(theirs, "pump-7", DAY).certificate
    with pytest.raises((ValueError, TypeError)):
        client.verify_directly_issued_by(ours.certificate)


def test_written_keys_are_private_and_load_back(tmp_path: Path) -> None:
    ca = create_ca("test CA", DAY)
    cert_path, key_path = ca.write(tmp_path, "ca")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    loaded = load_issued(tmp_path, "ca")
    assert loaded.certificate == ca.certificate
    issue_client(loaded, "pump-1", DAY).certificate.verify_directly_issued_by(ca.certificate)
