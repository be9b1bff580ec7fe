"""Draining the device's outbox to HQ: batches, a window in flight, acks, resends.

The SQLite outbox is the source of truth, not paho's in-memory session: an event
leaves the outbox only when HQ's ack names it. Several batches may be in flight at
once (for throughput); if HQ does not answer in time, or the connection drops,
everything unacknowledged is simply sent again from the oldest (HQ is idempotent by
event id), with the wait doubling so a missing collector is not flooded.
"""

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from kiosk.core.ledger import Ledger

log = logging.getLogger("kiosk.sync.outbox")


class OutboxSender:
    """``publish(events)`` sends one batch; the sender decides what and when."""

    def __init__(self, ledger: Ledger, publish: Callable[[list[dict]], None], *,
                 batch_size: int = 250, window: int = 8, ack_timeout: float = 10.0,
                 max_ack_timeout: float = 300.0):
        self.ledger, self.publish = ledger, publish
        self.batch_size, self.window = batch_size, window
        self.base_timeout = self.timeout = ack_timeout
        self.max_timeout = max_ack_timeout
        self.cursor = 0  # highest seq sent since the last reset
        self.inflight: dict[str, float] = {}  # event id -> when sent (insertion = send order)
        self.last_ack: datetime | None = None

    def reset(self) -> None:
        """Forget what is in flight: the next pump resends from the oldest event."""
        self.cursor = 0
        self.inflight.clear()

    def pump(self, now: float) -> int:
        """Send batches until the window is full or the outbox has nothing new."""
        sent = 0
        while len(self.inflight) < self.batch_size * self.window:
            events = self.ledger.pending_events(self.batch_size, after_seq=self.cursor)
            if not events:
                break
            self.publish(events)
            self.cursor = events[-1]["seq"]
            for event in events:
                self.inflight[event["id"]] = now
            sent += len(events)
        return sent

    def on_ack(self, ids: list[str]) -> int:
        """HQ stored these events: delete them from the outbox."""
        removed = self.ledger.ack(ids)
        for event_id in ids:
            self.inflight.pop(event_id, None)
        self.timeout = self.base_timeout
        self.last_ack = datetime.now(UTC)
        return removed

    def check_timeout(self, now: float) -> bool:
        """True (and a reset) if the oldest event in flight waited too long for its ack."""
        if not self.inflight:
            return False
        oldest = next(iter(self.inflight.values()))
        if now - oldest < self.timeout:
            return False
        log.warning("no ack from HQ for %d event(s) after %.0f s; sending them again",
                    len(self.inflight), self.timeout)
        self.reset()
        self.timeout = min(self.timeout * 2, self.max_timeout)
        return True
