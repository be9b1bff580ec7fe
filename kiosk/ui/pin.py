"""Staff PIN: stored only as a salted PBKDF2 hash in ``[ui] pin_hash``.

Format ``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (salt and hash URL-safe base64), the
same shape Django uses, so a technician can recognise it. ``kiosk pin-hash`` makes one.
"""

import hashlib
import hmac
import os

from kiosk.core import b64url
from kiosk.i18n import Msg

SCHEME = "pbkdf2_sha256"
ITERATIONS = 120_000
MIN_DIGITS, MAX_DIGITS = 4, 8


def check_pin_format(pin: str) -> None:
    """Raise ValueError unless the PIN is 4-8 digits (what the on-screen keypad types)."""
    if not (pin.isdigit() and pin.isascii() and MIN_DIGITS <= len(pin) <= MAX_DIGITS):
        raise ValueError(Msg("a staff PIN must be {least}-{most} digits", least=MIN_DIGITS, most=MAX_DIGITS))


def make_hash(pin: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    check_pin_format(pin)
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${b64url.encode(salt)}${b64url.encode(digest)}"


def parse_hash(text: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest); ValueError says what is wrong with the string."""
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != SCHEME or not parts[1].isdigit():
        raise ValueError(Msg("must look like {scheme}$ITERATIONS$SALT$HASH (see: kiosk pin-hash)", scheme=SCHEME))
    try:
        return int(parts[1]), b64url.decode(parts[2]), b64url.decode(parts[3])
    except ValueError:
        raise ValueError(Msg("salt or hash is not base64 (see: kiosk pin-hash)")) from None


def verify(pin: str, stored: str) -> bool:
    """True if ``pin`` matches the stored hash (constant-time comparison)."""
    iterations, salt, digest = parse_hash(stored)
    candidate = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return hmac.compare_digest(candidate, digest)
