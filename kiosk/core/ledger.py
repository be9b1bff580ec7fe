"""Checking, confirming and voiding redemptions; the outbox the sync agent drains.

This is the service layer the CLI, the UI controller and the sync agent call. A
confirmation writes the redemption, the use counter and the outbox event in one
``BEGIN IMMEDIATE`` transaction and re-checks the verdict inside it, so two
concurrent confirms of a single-use code (threads or processes) yield one redemption.
"""

import json
import logging
import re
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from kiosk.core import codelist, codes, importer, payload, timefmt
from kiosk.core.bundle import reward_title
from kiosk.core.clock import Clock
from kiosk.core.events import Event
from kiosk.core.ids import uuid7
from kiosk.core.store import Store
from kiosk.core.verdict import Verdict, decide
from kiosk.errors import StoreError, VoidError
from kiosk.i18n import Msg

log = logging.getLogger(__name__)

DEFAULT_VOID_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class Result:
    """What the kiosk knows about one scanned payload."""

    verdict: Verdict
    payload: str
    code_hash: str | None = None
    masked_code: str | None = None
    reward_id: str | None = None
    reward: dict | None = None
    title: str = ""
    detail: dict = field(default_factory=dict)
    redemption_id: str | None = None
    at: datetime | None = None
    clock: str | None = None

    def to_json(self) -> dict:
        return {
            "verdict": str(self.verdict),
            "reward_id": self.reward_id,
            "title": self.title,
            "reward": self.reward,
            "masked_code": self.masked_code,
            "detail": self.detail,
            "redemption_id": self.redemption_id,
            "at": timefmt.format(self.at) if self.at else None,
            "clock": self.clock,
        }


@dataclass(frozen=True)
class Identity:
    device: str
    store: str
    program: str


def outbox_depth(store: Store) -> int:
    """Events recorded here that HQ has not acknowledged yet."""
    return store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]


_USES = "SELECT uses, last_at, last_device, last_store FROM code_uses WHERE code_hash = ?"


class Ledger:
    def __init__(self, store: Store, identity: Identity, *, clock: Clock | None = None,
                 lang: str = "en", pattern: re.Pattern[str] | None = None,
                 void_window: timedelta = DEFAULT_VOID_WINDOW):
        self.store, self.identity, self.lang, self.pattern = store, identity, lang, pattern
        self.void_window = void_window
        self.clock = clock or Clock()
        self._cache_key: tuple | None = None
        self._cached: tuple = (None, None, None)
        self._view: codelist.View | None = None
        self.list_problem: str | None = None  # why the installed list cannot be read
        if self.clock.floor is None:  # the ledger knows the newest time already seen
            self.clock.floor = self.clock_floor

    # -- cached database state --------------------------------------------------
    def _state(self) -> tuple:
        """(current list, clock floor, its open files), re-read only when the database changed.

        ``PRAGMA data_version`` changes when another connection commits; this
        connection's own writes show in ``total_changes``. A lookup then costs two
        indexed queries instead of re-reading and re-parsing the list's rewards.
        The list's files are (re)opened when the installed list names other ones."""
        conn = self.store.conn
        key = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
        if key != self._cache_key:
            value = self.store.get_meta("clock_floor")
            have = self.store.current_list()
            try:
                self._view = self._open_view(have)
                self.list_problem = None
            except StoreError as exc:  # a list file lost or damaged: no list, but the
                if self.list_problem != str(exc):  # outbox, acks and the clock work on
                    log.error("%s; verdicts say no_list until a list is imported", exc)
                self.list_problem, have, self._view = str(exc), None, None
            self._cached = (have, timefmt.parse(value) if value else None, self._view)
            self._cache_key = key
        return self._cached

    def _open_view(self, have) -> codelist.View | None:
        if have is None:
            return None
        view = self._view
        if view is not None and (view.snapshot_file, view.overlay_file) == (
                have.snapshot_file, have.overlay_file):
            return view
        try:
            return codelist.open_view(self.store.path, self.store.conn, have.snapshot_file,
                                      have.overlay_file)
        except sqlite3.Error as exc:  # replaced and removed between reading the row and here
            again = self.store.current_list()
            if again is None or (again.snapshot_file, again.overlay_file) == (
                    have.snapshot_file, have.overlay_file):
                raise StoreError(Msg("code list file {file} cannot be read: {error}", file=have.snapshot_file,
                                     error=exc)) from exc
            return self._open_view(again)

    # -- time ---------------------------------------------------------------
    def clock_floor(self) -> datetime | None:
        return self._state()[1]

    # -- verdicts -------------------------------------------------------------
    def check(self, data: str | bytes, lang: str | None = None) -> Result:
        """The verdict for a payload, without recording anything."""
        return self._evaluate(self.store.conn, data, lang or self.lang)

    def _evaluate(self, conn, data: str | bytes, lang: str) -> Result:
        parsed = payload.parse(data, self.pattern)
        if not parsed.is_code:
            return Result(Verdict.NOT_A_CODE, parsed.raw)
        masked = parsed.code[-4:]
        have, floor, view = self._state()
        if have is None:
            return Result(Verdict.NO_LIST, parsed.raw, masked_code=masked)
        digest = codes.code_digest(have.code_salt, parsed.code)
        row, hq_uses = view.find(digest)
        uses_row = conn.execute(_USES, (digest.hex(),)).fetchone()
        uses = (uses_row[0] if uses_row else 0) + hq_uses  # HQ's count from before this list
        # our own floor is known already; a caller-supplied floor function is asked
        reading = (self.clock.read(floor=floor) if self.clock.floor == self.clock_floor
                   else self.clock.read())
        verdict = decide(row, uses, reading.now, self.identity.store)
        reward = have.rewards.get(row.reward_id) if row and row.reward_id else None
        detail = {"uses": uses, "list_version": have.version}
        if row is not None:
            detail.update(max_uses=row.max_uses, stores=list(row.stores) if row.stores else None,
                          valid_from=row.valid_from and timefmt.format(row.valid_from),
                          valid_until=row.valid_until and timefmt.format(row.valid_until))
        if uses_row and uses_row[1]:
            detail.update(last_at=uses_row[1], last_device=uses_row[2], last_store=uses_row[3])
        return Result(verdict, parsed.raw, digest.hex(), masked, row.reward_id if row else None,
                      reward, reward_title(reward, lang), detail, at=reading.now,
                      clock=reading.source)

    # -- confirm ------------------------------------------------------------
    def confirm(self, data: str | bytes, staff: str | None = None, lang: str | None = None) -> Result:
        """Record a redemption if (and only if) the code is ready, atomically."""
        with self.store.transaction() as tx:
            result = self._evaluate(tx, data, lang or self.lang)
            if result.verdict is not Verdict.READY:
                return result
            event = self._record(tx, "redeem", result, staff, voids=None)
            tx.execute(
                "INSERT INTO code_uses (code_hash, uses, last_at, last_device, last_store) "
                "VALUES (?, 1, ?, ?, ?) ON CONFLICT (code_hash) DO UPDATE SET "
                "uses = uses + 1, last_at = excluded.last_at, "
                "last_device = excluded.last_device, last_store = excluded.last_store",
                (result.code_hash, event["at"], self.identity.device, self.identity.store))
        detail = {**result.detail, "uses": result.detail["uses"] + 1, "last_at": event["at"],
                  "last_device": self.identity.device, "last_store": self.identity.store}
        return replace(result, verdict=Verdict.REDEEMED, redemption_id=event["id"], detail=detail)

    def _record(self, tx, kind: str, result: Result, staff: str | None, voids: str | None) -> dict:
        """Insert a local redemption/void row and its outbox event; return the event."""
        seq = int(Store.get_meta_conn(tx, "seq") or 0) + 1
        at = timefmt.format(result.at)
        event = Event(
            id=uuid7(), seq=seq, device=self.identity.device, store=self.identity.store,
            kind=kind, voids=voids, code_hash=result.code_hash, reward_id=result.reward_id,
            list_version=result.detail.get("list_version"), at=at, clock=result.clock,
            staff=staff).to_dict()
        tx.execute(
            "INSERT INTO redemptions (id, seq, device, store, kind, voids, code_hash, reward_id, "
            "list_version, at, clock, staff, origin, masked_code) "
            "VALUES (:id, :seq, :device, :store, :kind, :voids, :code_hash, :reward_id, "
            ":list_version, :at, :clock, :staff, 'local', :masked)",
            {**event, "masked": result.masked_code})
        tx.execute("INSERT INTO outbox (event_id, seq, body, created_at) VALUES (?, ?, ?, ?)",
                   (event["id"], seq, json.dumps(event, separators=(",", ":")), at))
        Store.set_meta(tx, "seq", str(seq))
        floor = Store.get_meta_conn(tx, "clock_floor")
        if floor is None or at > floor:
            Store.set_meta(tx, "clock_floor", at)
        return event

    # -- void -----------------------------------------------------------------
    def void(self, redemption_id: str, staff: str | None = None) -> dict:
        """Undo a redemption made on this device within the void window."""
        with self.store.transaction() as tx:
            row = tx.execute(
                "SELECT kind, origin, voided_by, at, code_hash, reward_id, list_version, masked_code "
                "FROM redemptions WHERE id = ?", (redemption_id,)).fetchone()
            if row is None or row[0] != "redeem":
                raise VoidError(Msg("no redemption {id} on this device", id=redemption_id))
            if row[1] != "local":
                raise VoidError(Msg("redemption {id} was made on another device; void it there", id=redemption_id))
            if row[2]:
                raise VoidError(Msg("redemption {id} was already undone", id=redemption_id))
            reading = self.clock.read()
            if reading.now - timefmt.parse(row[3]) > self.void_window:
                minutes = int(self.void_window.total_seconds() // 60)
                raise VoidError(Msg("redemption {id} is older than the {minutes}-minute undo window",
                                     id=redemption_id, minutes=minutes))
            result = Result(Verdict.REDEEMED, "", code_hash=row[4], reward_id=row[5],
                            masked_code=row[7], detail={"list_version": row[6]},
                            at=reading.now, clock=reading.source)
            event = self._record(tx, "void", result, staff, voids=redemption_id)
            tx.execute("UPDATE redemptions SET voided_by = ? WHERE id = ?", (event["id"], redemption_id))
            tx.execute("UPDATE code_uses SET uses = max(uses - 1, 0) WHERE code_hash = ?", (row[4],))
        return event

    # -- history and outbox -----------------------------------------------------
    def history(self, since: datetime | None = None, limit: int | None = None) -> list[dict]:
        sql = ("SELECT id, seq, device, store, kind, voids, code_hash, reward_id, list_version, "
               "at, clock, staff, origin, masked_code, voided_by FROM redemptions")
        params: list = []
        if since is not None:
            sql += " WHERE at >= ?"
            params.append(timefmt.format(since))
        sql += " ORDER BY at DESC, seq DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self.store.rows(sql, params)

    def last_local_redemption(self) -> dict | None:
        rows = self.store.rows(
            "SELECT * FROM redemptions WHERE origin = 'local' AND kind = 'redeem' "
            "ORDER BY seq DESC LIMIT 1")
        return rows[0] if rows else None

    def pending_events(self, limit: int = 100, after_seq: int = 0) -> list[dict]:
        """Unacknowledged events in order; ``after_seq`` skips those already in flight."""
        rows = self.store.conn.execute(
            "SELECT body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def outbox_depth(self) -> int:
        return outbox_depth(self.store)

    def ack(self, event_ids: list[str]) -> int:
        """Delete acknowledged events from the outbox; returns how many were removed."""
        with self.store.transaction() as tx:
            cur = tx.executemany("DELETE FROM outbox WHERE event_id = ?", [(i,) for i in event_ids])
            if cur.rowcount:  # a list with a new salt must be signed after this (importer)
                Store.set_meta(tx, importer.ACKED_AT, timefmt.format(self.clock.read().now))
            return cur.rowcount

    def knows(self, event_id: str) -> bool:
        """True if this redemption or void is recorded here (ours or another kiosk's)."""
        return self.store.conn.execute("SELECT 1 FROM redemptions WHERE id = ?",
                                       (event_id,)).fetchone() is not None

    def apply_remote(self, event: dict) -> bool:
        """Apply another kiosk's redemption or void (store fan-out). Idempotent.

        Fan-out can only add uses, never take away this kiosk's own: a remote void
        undoes only a remote redemption made by the same device that sends the void
        (a local redemption is undone only by :meth:`void` here). Returns True if the
        event changed anything."""
        if event.get("device") == self.identity.device:
            return False
        with self.store.transaction() as tx:
            if tx.execute("SELECT 1 FROM redemptions WHERE id = ?", (event["id"],)).fetchone():
                return False
            if event["kind"] == "void" and not self._remote_void_allowed(tx, event):
                return False
            tx.execute(
                "INSERT INTO redemptions (id, seq, device, store, kind, voids, code_hash, "
                "reward_id, list_version, at, clock, staff, origin) VALUES (:id, :seq, :device, "
                ":store, :kind, :voids, :code_hash, :reward_id, :list_version, :at, :clock, "
                ":staff, 'remote')", Event.from_dict(event).to_dict())
            if event["kind"] == "redeem":
                self._apply_remote_redeem(tx, event)
            else:
                self._apply_remote_void(tx, event)
        return True

    def remote_void_allowed(self, event: dict) -> bool:
        """False for a remote void of a redemption made here or by another device."""
        return self._remote_void_allowed(self.store.conn, event)

    @staticmethod
    def _remote_void_allowed(tx, event: dict) -> bool:
        """A remote void may only name a redemption of its own sender (or one not seen
        here yet, which must then come from that sender: checked on arrival)."""
        row = tx.execute("SELECT origin, device FROM redemptions WHERE id = ?",
                         (event.get("voids"),)).fetchone()
        return row is None or (row[0] == "remote" and row[1] == event.get("device"))

    @staticmethod
    def _apply_remote_redeem(tx, event: dict) -> None:
        """Count a remote use, unless its void already arrived (fan-out order varies)
        from the same device."""
        void = tx.execute("SELECT id FROM redemptions WHERE kind = 'void' AND voids = ? "
                          "AND device = ? AND origin = 'remote'",
                          (event["id"], event["device"])).fetchone()
        if void:
            tx.execute("UPDATE redemptions SET voided_by = ? WHERE id = ?", (void[0], event["id"]))
            return
        tx.execute(
            "INSERT INTO code_uses (code_hash, uses, last_at, last_device, last_store) "
            "VALUES (?, 1, ?, ?, ?) ON CONFLICT (code_hash) DO UPDATE SET uses = uses + 1, "
            "last_device = iif(excluded.last_at >= coalesce(last_at, ''), excluded.last_device, last_device), "
            "last_store = iif(excluded.last_at >= coalesce(last_at, ''), excluded.last_store, last_store), "
            "last_at = max(coalesce(last_at, ''), excluded.last_at)",
            (event["code_hash"], event["at"], event["device"], event["store"]))

    @staticmethod
    def _apply_remote_void(tx, event: dict) -> None:
        """Undo a remote use only if that redemption is known here and not yet undone
        (:meth:`_remote_void_allowed` made sure it is the sender's own)."""
        row = tx.execute("SELECT voided_by, code_hash FROM redemptions WHERE id = ? AND kind = 'redeem'",
                         (event.get("voids"),)).fetchone()
        if row is None or row[0] is not None:
            return  # not seen yet: _apply_remote_redeem finds this void when it arrives
        tx.execute("UPDATE redemptions SET voided_by = ? WHERE id = ?", (event["id"], event["voids"]))
        tx.execute("UPDATE code_uses SET uses = max(uses - 1, 0) WHERE code_hash = ?", (row[1],))
