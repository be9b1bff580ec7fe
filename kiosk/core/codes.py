"""Redeem-code normalisation and hashing (bundle wire contract v1, DESIGN.md section 3).

The device never stores raw codes, only ``HMAC-SHA256(code_salt, normalised code)``.
"""

import hashlib
import hmac

_DROP = str.maketrans("", "", " -")


def normalise(code: str) -> str:
    """Upper-case the code and drop spaces and dashes."""
    return code.upper().translate(_DROP)


def code_hash(salt: bytes, code: str) -> str:
    """Lowercase hex HMAC-SHA256 of the normalised code, keyed by the bundle's salt."""
    return hmac.new(salt, normalise(code).encode("utf-8"), hashlib.sha256).hexdigest()


def mask(code: str, keep: int = 4) -> str:
    """The code with all but its last ``keep`` characters hidden, for receipts and logs."""
    norm = normalise(code)
    return "\u2022" * max(0, len(norm) - keep) + norm[-keep:]
