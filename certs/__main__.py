"""`python -m certs`: make the development CA and server certificate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certs.authority import (
    CertificatesExistError,
    make_development_certificates,
    trust_instructions,
)
from server.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    """Write the certificates under the data dir and say how to trust the CA."""
    parser = argparse.ArgumentParser(
        prog="python -m certs",
        description="Make a local CA and a TLS certificate for localhost, 127.0.0.1 and ::1.",
    )
    parser.add_argument("--dir", type=Path, help="output folder (default: $IOP_DATA_DIR/certs)")
    parser.add_argument("--force", action="store_true", help="replace existing certificates")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when certificates already exist"
    )
    args = parser.parse_args(argv)
    if args.dir is None:
        try:
            directory = Settings.from_env().certs_dir
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
    else:
        directory = args.dir
    try:
        paths = make_development_certificates(directory, overwrite=args.force)
    except CertificatesExistError as exc:
        if args.if_missing:
            print(f"certificates already present in {directory}")
            return 0
        print(str(exc), file=sys.stderr)
        return 1
    print(f"wrote {paths.ca_cert}, {paths.server_cert} and their keys (mode 0600)")
    print(trust_instructions(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
