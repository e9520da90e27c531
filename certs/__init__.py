"""Development TLS: a local CA and a localhost server certificate."""

from certs.authority import (
    CertificatesExistError,
    CertPaths,
    ensure_development_certificates,
    make_development_certificates,
    trust_instructions,
)

__all__ = [
    "CertPaths",
    "CertificatesExistError",
    "ensure_development_certificates",
    "make_development_certificates",
    "trust_instructions",
]
