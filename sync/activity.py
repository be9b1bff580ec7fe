"""The counter's activity to HQ: audit rows, low priority, after the redemptions.

The kiosk's audit trail (:mod:`kiosk.core.audit`, table ``audit``) says where the
counter flow hurts: refusals by reason, ready verdicts that timed out unconfirmed,
codes typed by staff, the time from a ready verdict to its confirm. HQ's friction
report needs them, so the agent sends them on ``.../activity`` (QoS 1) as a JSON list
of rows (:func:`sync.protocol.encode_activity`: the audit id as ``n``, ``at``,
``kind``, ``source``, ``verdict``, ``reward_id``, ``code_hash``; never a raw payload
or the masked code).

Redemptions always go first: a batch leaves only while the redemption outbox is
empty and nothing of it waits for an ack, and only one activity batch is in flight.
The cursor (the highest ``n`` HQ acknowledged, ack field ``activity``) lives in the
device's ``meta`` table and moves only on HQ's ack, so a restart or a lost message
means a resend (HQ stores rows idempotently by device and ``n``).
"""

import logging
from collections.abc import Callable

from kiosk.core.store import Store
from sync import protocol

log = logging.getLogger("kiosk.sync.activity")

CURSOR_KEY = "activity.acked"  # meta key: highest audit id HQ acknowledged
BATCH_SIZE = 200


class ActivitySender:
    """``publish(rows)`` sends one batch; :meth:`pump` decides when."""

    def __init__(self, store: Store, publish: Callable[[list[dict]], None], *,
                 batch_size: int = BATCH_SIZE, ack_timeout: float = 30.0,
                 max_ack_timeout: float = 600.0):
        if not 0 < batch_size <= protocol.MAX_ACTIVITY:
            raise ValueError(f"activity batch size must be 1-{protocol.MAX_ACTIVITY}")
        self.store, self.publish, self.batch_size = store, publish, batch_size
        self.base_timeout = self.timeout = ack_timeout
        self.max_timeout = max_ack_timeout
        self.inflight: int | None = None  # highest n of the batch waiting for its ack
        self.sent_at = 0.0

    @property
    def cursor(self) -> int:
        return int(self.store.get_meta(CURSOR_KEY, "0"))

    def reset(self) -> None:
        """Forget the batch in flight: the next pump sends again from the cursor."""
        self.inflight = None

    def pump(self, now: float, redemptions_idle: Callable[[], bool]) -> int:
        """Send one batch if none is in flight and ``redemptions_idle()``; rows sent."""
        if self.inflight is not None or not redemptions_idle():
            return 0
        rows = self.store.conn.execute(
            "SELECT id, at, kind, source, verdict, reward_id, code_hash FROM audit "
            "WHERE id > ? ORDER BY id LIMIT ?", (self.cursor, self.batch_size)).fetchall()
        if not rows:
            return 0
        self.publish([{"n": r[0], "at": r[1], "kind": r[2], "source": r[3], "verdict": r[4],
                       "reward_id": r[5], "code_hash": r[6]} for r in rows])
        self.inflight, self.sent_at = rows[-1][0], now
        return len(rows)

    def on_ack(self, acked: int | None) -> bool:
        """HQ stored the rows up to ``acked``: move the cursor (never past what was sent,
        never back). True if it moved."""
        if acked is None or self.inflight is None:
            return False
        moved = min(acked, self.inflight)
        if moved <= self.cursor:
            return False
        with self.store.transaction() as tx:
            Store.set_meta(tx, CURSOR_KEY, str(moved))
        if moved >= self.inflight:
            self.inflight = None
            self.timeout = self.base_timeout
        return True

    def check_timeout(self, now: float) -> bool:
        """True (and a reset) if the batch in flight waited too long for its ack."""
        if self.inflight is None or now - self.sent_at < self.timeout:
            return False
        log.info("no ack from HQ for activity up to %d after %.0f s; sending it again",
                 self.inflight, self.timeout)
        self.reset()
        self.timeout = min(self.timeout * 2, self.max_timeout)
        return True
