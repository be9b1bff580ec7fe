"""Redeem-code normalisation and hashing (bundle wire contract v1, DESIGN.md section 3).

The device never stores raw codes, only ``HMAC-SHA256(code_salt, normalised code)``.
"""

import hmac

_DROP = str.maketrans("", "", " -")


def normalise(code: str) -> str:
    """Upper-case the code and drop spaces and dashes."""
    return code.upper().translate(_DROP)


def code_digest(salt: bytes, code: str) -> bytes:
    """HMAC-SHA256 of the normalised code, keyed by the bundle's salt (32 raw bytes).

    HQ writes it into bundles (as hex, :func:`code_hash`) and the device looks scanned
    codes up by it, so both sides must compute it here.
    """
    return hmac.digest(salt, normalise(code).encode("utf-8"), "sha256")


def code_hash(salt: bytes, code: str) -> str:
    """Lowercase hex of :func:`code_digest`: the ``code_hash`` of bundle records."""
    return code_digest(salt, code).hex()
