import datetime as dt
import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs import CertificatesExistError, ensure_development_certificates
from certs import make_development_certificates as make

ROOT = Path(__file__).resolve().parents[2]


def _chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_server_certificate_is_signed_by_the_ca_and_names_every_loopback(tmp_path: Path) -> None:
    paths = make(tmp_path / "certs")
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = _chain(paths.server_cert)[0]
    server.verify_directly_issued_by(ca)
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    assert server.public_key().curve.name == "secp256r1"
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    validity = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=300) < validity <= dt.timedelta(days=398)


def test_keys_are_private_to_the_owner(tmp_path: Path) -> None:
    paths = make(tmp_path / "certs")
    for key in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_existing_certificates_are_not_overwritten_unless_asked(tmp_path: Path) -> None:
    paths = make(tmp_path / "certs")
    before = paths.ca_cert.read_bytes()
    with pytest.raises(CertificatesExistError):
        make(tmp_path / "certs")
    assert paths.ca_cert.read_bytes() == before
    make(tmp_path / "certs", overwrite=True)
    assert paths.ca_cert.read_bytes() != before


def test_ensure_reuses_a_complete_set(tmp_path: Path) -> None:
    first = ensure_development_certificates(tmp_path / "certs").server_cert.read_bytes()
    again = ensure_development_certificates(tmp_path / "certs").server_cert.read_bytes()
    assert first == again


def test_command_line_prints_trust_steps_and_refuses_a_second_run(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "certs", "--dir", str(tmp_path / "c")]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert first.returncode == 0, first.stderr
    assert "Authorities" in first.stdout and "ca.crt" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert second.returncode == 1
    assert "--force" in second.stderr
    forced = subprocess.run(
        [*cmd, "--force"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert forced.returncode == 0
