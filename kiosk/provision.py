"""Provisioning a kiosk: a kiosk.toml on the boot partition, or a signed setup QR.

Two ways a technician turns a freshly flashed device into a store's kiosk:

* **Boot partition file.** ``kiosk-hq enroll`` writes ``kiosk.toml``; the technician
  copies it onto the SD card's boot partition (FAT, readable from any laptop). On the
  next boot ``kiosk-firstboot.service`` runs ``kiosk provision apply``, which
  validates it, installs it as ``/etc/kiosk/kiosk.toml`` with its credential files
  (mode 0640, group ``kiosk``), and deletes the copies from the boot partition, so a
  card pulled from the device later does not hand out the broker password.
* **Setup QR.** ``kiosk-hq enroll --qr`` prints a QR holding
  ``KIOSK-SETUP:1:<base64url JSON>.<base64url Ed25519 signature>``. The signature
  covers everything before the dot (prefix and version included), made with an HQ
  key the image already trusts, so a random QR shown to the camera cannot
  re-provision a device. The payload carries an expiry so an old photo of a setup
  card is useless, and a one-time credential the broker accepts once.

Nothing here touches hardware; the file-system work takes its paths as arguments so
tests run it against a temporary root.
"""

import base64
import binascii
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.core import keys
from kiosk.errors import ProvisionError

SETUP_PREFIX = "KIOSK-SETUP:1:"
REQUIRED_FIELDS = ("device", "store", "program", "broker", "credential")
OPTIONAL_FIELDS = ("username", "key_id", "issued_at", "expires_at", "nonce", "ca")
DEFAULT_QR_TTL_S = 24 * 3600
CLOCK_SKEW_S = 300  # a device whose clock is a few minutes off still accepts a fresh QR

BOOT_FILE_CANDIDATES = (Path("/boot/firmware/kiosk.toml"), Path("/boot/kiosk.toml"))
CONFIG_DIR = Path("/etc/kiosk")
DATA_DIR = Path("/var/lib/kiosk")
SERVICE_GROUP = "kiosk"


# --- setup QR --------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_setup_qr(fields: Mapping[str, Any], private_key: Ed25519PrivateKey, *,
                  key_id: str | None = None, ttl_s: float = DEFAULT_QR_TTL_S,
                  now: float | None = None) -> str:
    """The text of a signed setup QR for ``fields`` (device, store, program, broker,
    credential; optional username, ca). Adds issued_at/expires_at (epoch seconds)
    unless given, and the signing key's id so the device picks the right trusted key."""
    missing = [f for f in REQUIRED_FIELDS if not fields.get(f)]
    if missing:
        raise ValueError(f"setup QR needs {', '.join(missing)}")
    unknown = set(fields) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        raise ValueError(f"setup QR does not carry {', '.join(sorted(unknown))}")
    issued = int(time.time() if now is None else now)
    body = {"issued_at": issued, "expires_at": issued + int(ttl_s), **dict(fields)}
    if key_id:
        body["key_id"] = key_id
    signed = SETUP_PREFIX + _b64url(json.dumps(body, separators=(",", ":")).encode())
    return signed + "." + _b64url(private_key.sign(signed.encode("ascii")))


def is_setup_qr(payload: str) -> bool:
    """True when a scanned text claims to be a setup QR (so the UI routes it here)."""
    return isinstance(payload, str) and payload.strip().startswith(SETUP_PREFIX)


def verify_setup_qr(payload: str, trusted_keys: Mapping[str, Ed25519PublicKey], *,
                    now: float | None = None) -> dict:
    """The fields of a genuine, unexpired setup QR; :class:`ProvisionError` otherwise.

    ``ProvisionError.reason`` is one of ``not_setup_qr``, ``malformed``, ``unknown_key``,
    ``bad_signature``, ``expired``, ``not_yet_valid``, ``missing_field``.
    """
    if not is_setup_qr(payload):
        raise ProvisionError("not_setup_qr", "this QR is not a kiosk setup code")
    signed, sep, sig_text = payload.strip().rpartition(".")
    try:
        if not sep:
            raise ValueError("no signature part")
        signature = _unb64url(sig_text)
        body = json.loads(_unb64url(signed[len(SETUP_PREFIX):]))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProvisionError("malformed", f"setup QR is damaged or incomplete ({exc})") from None
    if not isinstance(body, dict):
        raise ProvisionError("malformed", "setup QR body is not a JSON object")
    _check_signature(signed.encode("ascii"), signature, body.get("key_id"), trusted_keys)
    _check_fields(body)
    _check_time(body, time.time() if now is None else now)
    return body


def _check_signature(message: bytes, signature: bytes, key_id: Any,
                     trusted: Mapping[str, Ed25519PublicKey]) -> None:
    if not trusted:
        raise ProvisionError("unknown_key", "this device trusts no HQ key; cannot accept a setup QR")
    if key_id is not None and key_id not in trusted:
        raise ProvisionError("unknown_key", f"setup QR was signed by key {key_id!r}, "
                             f"which this device does not trust ({', '.join(sorted(trusted))})")
    candidates = [trusted[key_id]] if key_id is not None else list(trusted.values())
    if not any(keys.verify(k, signature, message) for k in candidates):
        raise ProvisionError("bad_signature", "setup QR signature does not verify: forged or altered")


def _check_fields(body: dict) -> None:
    missing = [f for f in REQUIRED_FIELDS if not isinstance(body.get(f), str) or not body[f]]
    if missing:
        raise ProvisionError("missing_field", f"setup QR lacks {', '.join(missing)}")
    for name in ("issued_at", "expires_at"):
        if not isinstance(body.get(name), int):
            raise ProvisionError("missing_field", f"setup QR lacks a numeric {name}")


def _check_time(body: dict, now: float) -> None:
    if now > body["expires_at"] + CLOCK_SKEW_S:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(body["expires_at"]))
        raise ProvisionError("expired", f"setup QR expired at {when}; ask HQ for a new one")
    if now < body["issued_at"] - CLOCK_SKEW_S:
        raise ProvisionError("not_yet_valid", "setup QR is issued in the future: "
                             "check the device clock")


def load_trusted_keys(key_dir: Path) -> dict[str, Ed25519PublicKey]:
    """HQ public keys baked into the image: ``KEY_ID.pub.pem`` files in ``key_dir``."""
    result = {}
    for pem in sorted(Path(key_dir).glob("*.pub.pem")) if Path(key_dir).is_dir() else []:
        result[pem.name.removesuffix(".pub.pem")] = keys.load_public(pem)
    return result
