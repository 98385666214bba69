"""`edgebnn keys generate`: CURVE key pairs in zmq.auth's certificate format.

NAME.key holds the public key (give it to the other side); NAME.key_secret holds both
and is created readable by its owner only.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth


class KeyGenerationError(Exception):
    """Keys cannot be generated here."""


def generate_keypair(directory: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret into `directory`; never overwrites."""
    if not zmq.has("curve"):
        raise KeyGenerationError(
            "this libzmq was built without CURVE (libsodium); cannot make keys"
        )
    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyGenerationError(f"{path} exists; remove it first to replace the key pair")
    directory.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)
    try:
        public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old_umask)
    os.chmod(secret_file, 0o600)
    os.chmod(public_file, 0o644)
    return Path(public_file), Path(secret_file)
