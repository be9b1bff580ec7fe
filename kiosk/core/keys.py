"""Ed25519 keys in the PEM forms the openssl command line reads and writes.

cryptography (about 10 MB of memory once its Rust core is loaded) is imported only
where a key is made, signed with or verified: trusted keys read from the config
(:func:`read_public`) stay bytes until their first signature check, so the counter UI,
which never verifies, does not load it (docs/ui.md "Memory").
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# RFC 8410: the DER SubjectPublicKeyInfo of an Ed25519 key is this prefix + 32 key bytes
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")

PRIVATE_NAME = "signing-key.pem"
PUBLIC_NAME = "signing-key.pub.pem"


def generate(out_dir: Path) -> tuple[Path, Path]:
    """Write a new key pair: PKCS#8 private key (mode 0600) and SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    priv_path, pub_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if priv_path.exists():
        raise FileExistsError(f"{priv_path} exists; refusing to overwrite a signing key")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(public_pem(private.public_key()))
    return priv_path, pub_path


def public_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private(path: Path) -> Ed25519PrivateKey:
    """An unencrypted PKCS#8 Ed25519 private key; ValueError for any other key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key PEM; ValueError for any other key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def verify(key: Ed25519PublicKey | PublicKey, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` is ``key``'s over ``message`` (False instead of raising)."""
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class PublicKey:
    """A trusted Ed25519 public key as read from its PEM; cryptography's key object is
    made on the first :meth:`verify` (or :meth:`public_bytes`)."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self._key: Ed25519PublicKey | None = None

    def key(self) -> Ed25519PublicKey:
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            self._key = Ed25519PublicKey.from_public_bytes(self.raw)
        return self._key

    def verify(self, signature: bytes, message: bytes) -> None:
        self.key().verify(signature, message)

    def public_bytes(self, *args, **kwargs) -> bytes:
        return self.key().public_bytes(*args, **kwargs)


def read_public(path: Path) -> PublicKey | Ed25519PublicKey:
    """An Ed25519 public key PEM, like :func:`load_public` (same errors), without loading
    cryptography when the file is the plain one-block form openssl and :func:`generate`
    write; anything else goes through cryptography's parser, which names the problem."""
    data = Path(path).read_bytes()
    raw = _plain_ed25519_pem(data)
    return PublicKey(raw) if raw is not None else load_public(path)


def _plain_ed25519_pem(data: bytes) -> bytes | None:
    lines = data.strip().splitlines()
    if len(lines) < 3 or lines[0] != b"-----BEGIN PUBLIC KEY-----" or lines[-1] != b"-----END PUBLIC KEY-----":
        return None
    try:
        der = base64.b64decode(b"".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(der) != len(_ED25519_SPKI) + 32 or not der.startswith(_ED25519_SPKI):
        return None
    return der[len(_ED25519_SPKI):]
