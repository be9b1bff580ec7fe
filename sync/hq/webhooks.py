"""Webhooks: tell the loyalty platform the moment a reward is used.

Types: ``redemption.created``, ``redemption.voided`` (from the events table) and
``conflict.created`` (from the conflicts table). Each webhook keeps its own cursors in
the database and is delivered in order, at least once:

* a delivery is a POST of ``{"type", "id", "created_at", "data"}`` as JSON, with the
  headers ``Kiosk-Webhook-Id`` (the idempotency key: the same for every retry of the
  same delivery), ``Kiosk-Webhook-Timestamp`` and ``Kiosk-Webhook-Signature``
  (``v1=`` hex HMAC-SHA256 of ``"{timestamp}.{body}"`` under the webhook's secret, so a
  receiver can check both the sender and the freshness);
* the cursor moves only after a 2xx answer, so a crash or restart repeats at most the
  delivery in flight, never skips one; a receiver drops repeats by the id;
* a failed delivery (no answer, timeout, non-2xx) is retried with exponential backoff
  (1 s doubling up to 10 min); later deliveries of the same webhook wait behind it,
  so the order holds.

The :class:`Dispatcher` runs inside ``kiosk-hq serve`` on its own thread and
connection; ``kiosk-hq webhook add|remove|list`` manage the table.
"""

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sync import protocol
from sync.hq.db import events_after
from sync.hq.engine import Conn, Engine, db_errors

log = logging.getLogger("kiosk.hq.webhooks")
TYPES = ("redemption.created", "redemption.voided", "conflict.created")
BATCH = 100
TIMEOUT_S = 10.0
BACKOFF_MAX_S = 600.0

class WebhookError(ValueError):
    """A webhook command that cannot be carried out."""


def add(conn: Conn, name: str, url: str, *, from_now: bool = True) -> str:
    """Add webhook ``name`` posting to ``url``; returns its signing secret (shown once).

    ``from_now``: deliver only what happens from now on (not the whole history)."""
    if not url.startswith(("https://", "http://")):
        raise WebhookError(f"the webhook URL must be http(s)://..., not {url!r}")
    secret = "whsec_" + secrets.token_urlsafe(32)
    ecol = conn.engine.cursor_column
    with conn.write():
        if conn.execute("SELECT 1 FROM webhooks WHERE name = ?", (name,)).fetchone():
            raise WebhookError(f"a webhook called {name!r} already exists")
        e0 = c0 = 0
        if from_now:
            e0 = conn.execute(f"SELECT coalesce(max({ecol}), 0) FROM events").fetchone()[0]
            c0 = conn.execute("SELECT coalesce(max(n), 0) FROM conflicts").fetchone()[0]
        conn.execute("INSERT INTO webhooks (name, url, secret, created_at, event_cursor, "
                     "conflict_cursor) VALUES (?, ?, ?, ?, ?, ?)",
                     (name, url, secret, _now(), e0, c0))
    return secret


def remove(conn: Conn, name: str) -> None:
    if conn.execute("DELETE FROM webhooks WHERE name = ?", (name,)).rowcount != 1:
        raise WebhookError(f"no webhook called {name!r}")


def listing(conn: Conn) -> list[dict]:
    return conn.rows("SELECT name, url, created_at, delivered, last_error FROM webhooks "
                     "ORDER BY name")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Retry:
    attempts: int = 0
    next_at: float = 0.0


@dataclass
class Dispatcher:
    """Delivers pending webhooks every ``poll_s`` until :meth:`stop`."""

    engine: Engine
    poll_s: float = 1.0
    timeout_s: float = TIMEOUT_S
    backoff_s: float = 1.0  # first retry after this, doubling up to BACKOFF_MAX_S
    retries: dict[str, _Retry] = field(default_factory=dict)
    delivered: int = 0

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Dispatcher":
        self._thread = threading.Thread(target=self.run, name="hq-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)

    def run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                conn = conn or self.engine.connect()
                self.deliver_pending(conn)
            except db_errors() as exc:
                log.warning("webhooks: database: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.poll_s)
        if conn is not None:
            conn.close()

    def deliver_pending(self, conn: Conn) -> int:
        """One pass over every webhook; returns how many deliveries succeeded. Only one
        dispatcher per database delivers (:meth:`Conn.lead`); the others stand by."""
        if not conn.lead("webhooks"):
            return 0
        done = 0
        for hook in conn.rows("SELECT name, url, secret, event_cursor, conflict_cursor "
                              "FROM webhooks ORDER BY name"):
            retry = self.retries.get(hook["name"])
            if retry is not None and time.monotonic() < retry.next_at:
                continue
            done += self._deliver_hook(conn, hook)
        self.delivered += done
        return done

    def _pending(self, conn: Conn, hook: dict) -> list[tuple[str, int, str, dict]]:
        fields = ("program", *protocol.EVENT_FIELDS, "received_at")
        events = events_after(conn, hook["event_cursor"], BATCH, fields)
        with conn.settled():  # no writer in flight (sync/hq/engine.py)
            conflicts = conn.rows("SELECT n AS cursor, event_id, kind, program, store, device, "
                                  "code_hash, detail, flagged_at FROM conflicts WHERE n > ? "
                                  "ORDER BY n LIMIT ?", (hook["conflict_cursor"], BATCH))
        out = []
        for e in events:
            cursor = e.pop("cursor")
            kind = "redemption.voided" if e["kind"] == "void" else "redemption.created"
            out.append(("event_cursor", cursor, kind, e))
        for c in conflicts:
            cursor = c.pop("cursor")
            c["detail"] = json.loads(c["detail"]) if c["detail"] else None
            out.append(("conflict_cursor", cursor, "conflict.created", c))
        return out

    def _deliver_hook(self, conn: Conn, hook: dict) -> int:
        done = 0
        for column, cursor, kind, data in self._pending(conn, hook):
            key = (f"{kind}:{data['id']}" if column == "event_cursor"
                   else f"{kind}:{data['event_id']}:{data['kind']}")
            error = self._post(hook, kind, key, data)
            if error is not None:
                retry = self.retries.setdefault(hook["name"], _Retry())
                retry.attempts += 1
                retry.next_at = time.monotonic() + min(BACKOFF_MAX_S,
                                                      self.backoff_s * 2 ** (retry.attempts - 1))
                conn.execute("UPDATE webhooks SET last_error = ? WHERE name = ?",
                             (f"{_now()} {kind} {key}: {error}", hook["name"]))
                log.warning("webhook %s: %s (attempt %d)", hook["name"], error, retry.attempts)
                return done
            self.retries.pop(hook["name"], None)
            conn.execute(f"UPDATE webhooks SET {column} = ?, delivered = delivered + 1, "
                         "last_error = NULL WHERE name = ?", (cursor, hook["name"]))
            hook[column] = cursor
            done += 1
        return done

    def _post(self, hook: dict, kind: str, key: str, data: dict) -> str | None:
        body = json.dumps({"type": kind, "id": key, "created_at": _now(), "data": data},
                          separators=(",", ":"), ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        req = urllib.request.Request(hook["url"], data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "redeem-kiosk-hq",
            "Kiosk-Webhook-Id": key, "Kiosk-Webhook-Timestamp": stamp,
            "Kiosk-Webhook-Signature": sign(hook["secret"], stamp, body)})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read(65536)
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return str(getattr(exc, "reason", exc))
