"""A local certificate authority and a server certificate for development TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
# Browsers refuse server certificates valid for more than 398 days.
SERVER_VALIDITY = dt.timedelta(days=397)
DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1", "::1")


class CertificatesExistError(Exception):
    """Refusing to overwrite certificates that are already on disk."""


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where the development CA and server certificate are written."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def all(self) -> tuple[Path, ...]:
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key)

    def complete(self) -> bool:
        """True when every file of the set exists."""
        return all(path.is_file() for path in self.all())


def make_development_certificates(
    directory: Path, *, overwrite: bool = False, now: dt.datetime | None = None
) -> CertPaths:
    """Write a new CA and a localhost server certificate signed by it."""
    paths = CertPaths(directory)
    existing = [path for path in paths.all() if path.exists()]
    if existing and not overwrite:
        raise CertificatesExistError(
            f"certificates already exist in {directory} (pass --force to replace them)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    issued = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    not_before = issued - dt.timedelta(minutes=5)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "IOP Sessions development"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"IOP Sessions local CA {issued:%Y-%m-%d}"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(issued + CA_VALIDITY)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in DNS_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
    )
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(issued + SERVER_VALIDITY)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    _write_key(paths.ca_key, ca_key)
    _write_key(paths.server_key, server_key)
    _write_public(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    # The server file carries the chain so clients that only trust the CA verify it.
    _write_public(
        paths.server_cert,
        server_cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM),
    )
    return paths


def ensure_development_certificates(directory: Path) -> CertPaths:
    """Return the development certificates, making them first if any are missing."""
    paths = CertPaths(directory)
    if paths.complete():
        return paths
    return make_development_certificates(directory, overwrite=True)


def trust_instructions(paths: CertPaths) -> str:
    """How to make a browser or the system trust the development CA."""
    ca = paths.ca_cert.resolve()
    return "\n".join(
        [
            f"Development CA: {ca}",
            "Trust it once so browsers accept https://localhost without a warning:",
            f"  Chromium/Chrome: Settings > Privacy and security > Security > Manage "
            f"certificates > Authorities > Import {ca}",
            f"  Firefox: Settings > Privacy & Security > Certificates > View Certificates > "
            f"Authorities > Import {ca}",
            f"  Debian/Ubuntu system store: sudo cp {ca} /usr/local/share/ca-certificates/"
            f"iop-dev-ca.crt && sudo update-ca-certificates",
            f"  macOS: sudo security add-trusted-cert -d -r trustRoot -k "
            f"/Library/Keychains/System.keychain {ca}",
            "Command-line clients: curl --cacert " + str(ca) + " https://localhost:8443/healthz",
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o644)
