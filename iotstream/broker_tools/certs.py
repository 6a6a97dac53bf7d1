"""A development certificate authority: CA, server and client certificates for Mosquitto.

ECDSA P-256 keys (fast, and supported by mbedTLS on ESP32), SHA-256 signatures, and an
explicit lifetime on every certificate: nothing here defaults to years. For production use
your organisation's CA or a managed one (cert-manager, step-ca); the broker only needs the
PEM files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "create_ca", "issue_client", "issue_server", "load_issued"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key, unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>.crt`` (0644) and ``<name>.key`` (0600) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
        cert_path.write_bytes(self.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.key_pem)
        os.chmod(key_path, 0o600)
        return cert_path, key_path


def load_issued(folder: Path, name: str) -> Issued:
    """Read ``<name>.crt`` and ``<name>.key`` from ``folder`` (e.g. the CA to sign with)."""
    cert = x509.load_pem_x509_certificate((folder / f"{name}.crt").read_bytes())
    key = serialization.load_pem_private_key((folder / f"{name}.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{folder / name}.key is not an EC private key")
    return Issued(cert, key)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
    lifetime: dt.timedelta, not_before: dt.datetime | None,
) -> x509.CertificateBuilder:  # fmt: skip
    start = not_before or _now() - dt.timedelta(minutes=5)  # small allowance for clock skew
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
    )


def create_ca(
    common_name: str, lifetime: dt.timedelta, *, not_before: dt.datetime | None = None
) -> Issued:
    """A self-signed CA valid for ``lifetime`` (from ``not_before``, default now)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key, lifetime, not_before)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _leaf(
    ca: Issued,
    common_name: str,
    lifetime: dt.timedelta,
    not_before: dt.datetime | None,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName] = (),
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca.certificate.subject, key, lifetime, not_before)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def issue_server(
    ca: Issued,
    hosts: Sequence[str],
    lifetime: dt.timedelta,
    *,
    not_before: dt.datetime | None = None,
) -> Issued:
    """A server certificate for ``hosts`` (DNS names or IP addresses, all put in the SAN).

    The first host is also the common name. Clients check the host they dial against the SAN.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host")
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _leaf(ca, hosts[0], lifetime, not_before, ExtendedKeyUsageOID.SERVER_AUTH, sans)


def issue_client(
    ca: Issued,
    common_name: str,
    lifetime: dt.timedelta,
    *,
    not_before: dt.datetime | None = None,
) -> Issued:
    """A client certificate whose CN is ``common_name`` (the device id / username)."""
    return _leaf(ca, common_name, lifetime, not_before, ExtendedKeyUsageOID.CLIENT_AUTH)
