"""Who may use HQ's web service: integration tokens and dashboard users.

* Integration tokens (``kiosk-hq api-token create``) are random 256-bit strings shown
  once; HQ keeps only their SHA-256 (a token has far too much entropy for a slow hash
  to add anything), so a copy of the database grants no API access.
* Dashboard users have a role (``owner`` sees every store; ``manager`` only the stores
  listed) and an Argon2id password hash (argon2-cffi, the reference implementation's
  binding).
* The session cookie is signed with a secret kept in the ``meta`` table, made on
  first start, so every ``kiosk-hq serve`` process on one database accepts the others'
  sessions.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from kiosk.errors import KioskError
from sync.hq.engine import Conn

TOKEN_PREFIX = "khq_"
ROLES = ("owner", "manager")


class AuthError(KioskError, ValueError):
    """A token or user command that cannot be carried out (named in one line)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: Conn, name: str) -> str:
    """A new token called ``name``; the only time its text is seen."""
    name = name.strip()
    if not name:
        raise AuthError("a token needs a --name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with conn.write():
        taken = conn.execute("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,)).fetchone()
        if taken is not None:
            raise AuthError(f"a token called {name!r} already exists"
                            + (" (revoked)" if taken[0] else "") + ": choose another --name")
        conn.execute("INSERT INTO api_tokens (name, token_sha256, created_at) VALUES (?, ?, ?)",
                     (name, _digest(token), _now()))
    return token


def revoke_token(conn: Conn, name: str) -> None:
    cur = conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                       (_now(), name))
    if cur.rowcount != 1:
        raise AuthError(f"no active token called {name!r}")


def token_name(conn: Conn, token: str) -> str | None:
    """The name of the active token ``token``, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = conn.execute("SELECT name FROM api_tokens WHERE token_sha256 = ? AND revoked_at IS NULL",
                       (_digest(token),)).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class User:
    name: str
    role: str
    stores: tuple[str, ...]  # empty for an owner: every store

    def sees(self, store: str) -> bool:
        return self.role == "owner" or store in self.stores


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def add_user(conn: Conn, name: str, password: str, role: str, stores: tuple[str, ...] = ()) -> None:
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "manager" and not stores:
        raise AuthError("a manager needs --store (one or more)")
    if len(password) < 10:
        raise AuthError("the password must have at least 10 characters")
    with conn.write():
        if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise AuthError(f"a user called {name!r} already exists")
        conn.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                     (name, _hasher().hash(password), role, ",".join(stores), _now()))


def check_password(conn: Conn, name: str, password: str) -> User | None:
    from argon2.exceptions import VerificationError

    row = conn.execute("SELECT password_hash, role, stores FROM users WHERE name = ?",
                       (name,)).fetchone()
    if row is None:
        _hasher().hash(password)  # the same work as a wrong password: no user enumeration
        return None
    try:
        _hasher().verify(row[0], password)
    except VerificationError:
        return None
    return User(name, row[1], tuple(s for s in (row[2] or "").split(",") if s))


def load_user(conn: Conn, name: str) -> User | None:
    row = conn.execute("SELECT role, stores FROM users WHERE name = ?", (name,)).fetchone()
    return User(name, row[0], tuple(s for s in (row[1] or "").split(",") if s)) if row else None


def session_secret(conn: Conn) -> str:
    """The cookie-signing secret of this HQ database (made once)."""
    with conn.write():
        row = conn.execute("SELECT value FROM meta WHERE key = 'session_secret'").fetchone()
        if row is None:
            secret = secrets.token_urlsafe(48)
            conn.execute("INSERT INTO meta VALUES ('session_secret', ?)", (secret,))
        else:
            secret = row[0]
    return secret


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
