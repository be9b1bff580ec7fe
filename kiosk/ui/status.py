"""The status line: code list, sync, outbox, camera and printer, as staff see them.

:class:`StatusLine` reads the list and sync state on the controller's worker every
``STATUS_EVERY`` seconds and keeps it in the controller's ``status`` dict, beside
what the camera and the printer report.
"""

import logging
from datetime import UTC, datetime

from kiosk.ui.state import ScreenState

log = logging.getLogger(__name__)

STATUS_EVERY = 30.0  # s


class StatusLine:
    def __init__(self, state: ScreenState, status_reader=None):
        self.state = state
        self.status_reader = status_reader  # store -> the sync agent's state (kiosk.core.syncstate)
        self.next_at = 0.0

    def refresh(self) -> None:
        s = self.state
        self.next_at = s.now() + STATUS_EVERY
        s.worker.submit(self.read, self._read_done)

    def read(self) -> dict:
        """The list, sync and outbox figures (on the worker: it reads the database)."""
        ledger = self.state.ledger
        info: dict = {}
        have = ledger.store.current_list()
        if have is not None:
            info["list_version"] = have.version
            info["list_age_s"] = (datetime.now(UTC) - have.issued_at).total_seconds()
            info["list_expired"] = have.expires_at <= datetime.now(UTC)
        sync: dict = {}
        if self.status_reader is not None:
            try:
                sync = self.status_reader(ledger.store) or {}
                info.update(online=bool(sync.get("connected")), last_sync=sync.get("last_sync"))
            except Exception as exc:
                log.warning("sync status unavailable: %s", exc)
        # the sync status already counted the outbox; count it here only without one
        info["pending"] = sync["pending"] if "pending" in sync else ledger.outbox_depth()
        return info

    def _read_done(self, info, error) -> None:
        s = self.state
        if error is None:
            for key in ("list_version", "list_age_s", "list_expired", "online", "last_sync"):
                s.status.pop(key, None)
            s.status.update(info)
            s.changed()

    def camera_problem(self, message: str) -> None:
        s = self.state
        s.status.update(camera="missing", camera_message=message)
        s.changed()

    def camera_ok(self) -> None:
        s = self.state
        s.status.update(camera="ok", camera_message="")
        s.changed()
