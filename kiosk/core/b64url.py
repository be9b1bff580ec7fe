"""Unpadded URL-safe base64 (RFC 4648 section 5 without ``=``), as QR texts and hashes use it.

Used by the setup QR (kiosk.provision) and the staff PIN hash (kiosk.ui.pin). The
``=`` padding carries nothing a decoder needs, so it is left off; :func:`decode` puts
it back.
"""

import base64


def encode(data: bytes) -> str:
    """``data`` as URL-safe base64 without trailing ``=``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of unpadded (or padded) URL-safe base64; ``ValueError`` if it is not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
