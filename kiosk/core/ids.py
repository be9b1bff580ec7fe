"""Ids: the names of devices, stores, programs and keys; UUIDv7 event ids.

Names are checked by one rule everywhere (config, enroll, broker users) because the
same name is a config value, a broker user name and part of MQTT topics.
Event ids (RFC 9562 UUIDv7) are time-ordered and unique without coordination.
"""

import os
import re
import time
import uuid

from kiosk.i18n import N_

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
NAME_RULE = N_("1-64 letters, digits, '.', '_' or '-'")  # marked: config errors say it in the device's language


def is_name(text: str) -> bool:
    """True if ``text`` is a valid device, store, program, key or broker user name."""
    return bool(_NAME.match(text))


def uuid7(ms: int | None = None) -> str:
    """A UUIDv7 string: 48-bit Unix milliseconds, version 7, variant 10, 74 random bits."""
    ms = int(time.time() * 1000) if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
