"""Broker credentials: mosquitto password-file entries and per-device ACL blocks.

Mosquitto 2.0 password files hold ``user:$7$ITERATIONS$SALT$HASH``: PBKDF2-HMAC-SHA512,
a 12-byte salt, 101 iterations, base64 - what ``mosquitto_passwd`` writes. Written
here in Python so HQ needs no mosquitto install to enroll devices.

Each device gets its own ACL block. The topics hold the device's store and program,
which a ``pattern`` line cannot derive from ``%u`` alone, so the block names them
exactly: the device writes only its own redemptions, status and activity, reads only its own
acks, its programme's code lists and its store's fan-out. Only HQ writes the fan-out
(``stores/{store}/live``): the collector relays what devices sent on their own topics,
so every fan-out event names the device that really sent it.

Every HQ process (collector, publisher, ...) logs in with its own user
(:func:`hq_acl`): the broker makes the client id the user name, so two processes
sharing one login would keep knocking each other off.
"""

import base64
import hashlib
import os
import re
import secrets
from pathlib import Path

from kiosk.core import atomic, ids
from sync import protocol, remote

ITERATIONS = 101


def password_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A mosquitto ``$7$`` hash of ``password`` (new random salt unless given)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches a ``$7$`` hash from a password file."""
    _, kind, iterations, salt, digest = encoded.split("$")
    if kind != "7":
        raise ValueError("only mosquitto 2.0 ($7$) hashes are supported")
    return password_hash(password, base64.b64decode(salt), int(iterations)).split("$")[4] == digest


def new_password() -> str:
    """A random broker password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def check_user(name: str) -> str:
    """``name`` if it is a valid broker user name (a device id); ValueError otherwise."""
    if not ids.is_name(name):
        raise ValueError(f"{name!r}: use {ids.NAME_RULE}")
    return name


def upsert_password(path: Path, user: str, password: str) -> None:
    """Add or replace ``user``'s line in a mosquitto password file."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    kept.append(f"{check_user(user)}:{password_hash(password)}")
    atomic.write_text(path, "\n".join(kept) + "\n", keep_owner=True)


def device_acl(program: str, store: str, device: str) -> str:
    """The ACL block of one device (its username is its device id)."""
    own = lambda leaf: protocol.device_topic(program, store, device, leaf)  # noqa: E731
    return "\n".join([
        f"# device {device} begin",
        f"user {device}",
        f"topic write {own('redemptions')}",
        f"topic write {own('status')}",
        f"topic write {own('activity')}",
        f"topic read {own('acks')}",
        f"topic read {protocol.live_topic(program, store)}",
        f"topic read {protocol.program_root(program)}/codes/#",
        *remote.acl_lines(program, store, device),
        f"# device {device} end",
    ]) + "\n"


def hq_acl(user: str) -> str:
    """The ACL block of one HQ tool login: every programme's topics."""
    return "\n".join([
        f"# device {check_user(user)} begin",
        f"user {user}",
        f"topic readwrite {protocol.ROOT}/#",
        f"# device {user} end",
    ]) + "\n"


def upsert_acl(path: Path, device: str, block: str) -> None:
    """Add or replace the device's block (between its begin/end comments) in an ACL file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(rf"# device {re.escape(device)} begin\n.*?# device {re.escape(device)} end\n",
                         re.S)
    text = pattern.sub("", text)
    if text and not text.endswith("\n"):
        text += "\n"
    atomic.write_text(path, text + "\n" + block, mode=0o644, keep_owner=True)
