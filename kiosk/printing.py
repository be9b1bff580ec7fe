"""Printing redemption receipts through a durable print queue.

The redemption is recorded (by the ledger) before printing starts. Every receipt is
first a row in ``print_jobs``; it becomes ``printed`` only when the printer took the
whole job. A fault (unplugged, offline, paper out, cover open, busy, a network
printer that refuses or times out) leaves the row ``pending`` with its error, so
staff see it (:meth:`PrintService.pending`) and reprint it
(:meth:`PrintService.retry_pending`); nothing is lost and the next customer is never
blocked: :meth:`PrintService.print_redemption` never raises for printer faults,
returns within the transport's short timeouts and may be called from a worker thread
(the UI calls it off Kivy's main thread).
"""

import logging
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kiosk.config import LANGUAGES, Config, Section
from kiosk.core import receipt, timefmt
from kiosk.core.ids import uuid7
from kiosk.core.store import Store
from kiosk.errors import ConfigError, KioskError, PrinterError
from kiosk.hardware.printer import DEFAULT_TIMEOUT_S, ReceiptPrinter, open_printer
from kiosk.hardware.printer import faults as printer_faults
from kiosk.hardware.printer.transports import AutoUsbTransport
from kiosk.i18n import Msg

log = logging.getLogger(__name__)

PRINTED, QUEUED, NO_PRINTER = "printed", "queued", "no_printer"
SAVED = Msg("The receipt is saved: reprint it from the staff menu.")


@dataclass(frozen=True)
class PrintOutcome:
    """What happened to one receipt. ``state``: ``printed``, ``queued`` or ``no_printer``;
    ``message``: what to tell staff, a :class:`kiosk.i18n.Msg` (English as a ``str``,
    ``kiosk.i18n.say(outcome.message, lang)`` in another language)."""

    ok: bool
    state: str
    message: str
    fault: str | None = None  # the printer's fault word when queued
    job_id: int | None = None
    path: str | None = None  # the PNG of a preview:// printer


class PrintService:
    """Receipts for redemptions, printed now or kept in the queue until they are."""

    def __init__(self, store: Store, printer: ReceiptPrinter, settings: dict | None = None):
        # Its own connection: the UI thread's ledger transactions never interleave with ours.
        self.store = Store(store.path)
        self.printer, self.settings = printer, dict(settings or {})
        self._lock = threading.Lock()  # one job at a time on the printer
        self._db = threading.RLock()  # one thread at a time on our SQLite connection
        self.last: PrintOutcome | None = None

    # -- printing -------------------------------------------------------------
    def print_redemption(self, redemption_id: str, *, reprint: bool = False,
                         lang: str = "en") -> PrintOutcome:
        """Print the receipt of a recorded redemption; queue it if the printer fails."""
        data = self.receipt_data(redemption_id, reprint=reprint)
        if not self.printer.available:
            return self._remember(PrintOutcome(False, NO_PRINTER, Msg("No printer is configured; no receipt printed.")))
        with self._lock:
            job_id, reprint = self._job(redemption_id, reprint, lang)
            return self._remember(self._attempt(job_id, data, reprint, lang))

    def retry_pending(self) -> list[PrintOutcome]:
        """Print queued receipts, oldest first; stops at the first that fails again."""
        outcomes = []
        for job in self.pending():
            try:
                data = self.receipt_data(job["redemption_id"], reprint=bool(job["reprint"]))
            except KioskError as exc:  # undone or gone since: nothing to print any more
                self._finish(job["id"], "cancelled", error=str(exc))
                continue
            with self._lock:
                outcome = self._attempt(job["id"], data, bool(job["reprint"]), job["lang"])
            outcomes.append(self._remember(outcome))
            if not outcome.ok:
                break
        return outcomes

    def _attempt(self, job_id: int, data: receipt.ReceiptData, reprint: bool, lang: str) -> PrintOutcome:
        data = replace(data, reprint=reprint)
        try:
            where = self.printer.print_receipt(receipt.build(data, lang))
        except Exception as exc:  # never let a printer fault reach the counter
            err = exc if isinstance(exc, PrinterError) else printer_faults.classify(exc, self.printer.url)
            if not isinstance(exc, PrinterError):
                log.exception("unexpected error printing receipt %s", data.redemption_id)
            self._failed(job_id, err)
            return PrintOutcome(False, QUEUED, Msg("{problem} {saved}", problem=err, saved=SAVED), err.fault, job_id)
        self._finish(job_id, "printed")
        message = Msg("Receipt printed. Saved as {file}.", file=where) if where else Msg("Receipt printed.")
        return PrintOutcome(True, PRINTED, message, None, job_id, where)

    def _remember(self, outcome: PrintOutcome) -> PrintOutcome:
        self.last = outcome
        return outcome

    # -- the queue --------------------------------------------------------------
    def _job(self, redemption_id: str, reprint: bool, lang: str) -> tuple[int, bool]:
        """The pending job of this redemption (one per redemption), or a new one."""
        now = timefmt.format(datetime.now(UTC))
        with self._db, self.store.transaction() as tx:
            row = tx.execute("SELECT id, reprint FROM print_jobs WHERE redemption_id = ? AND "
                             "state = 'pending' ORDER BY id LIMIT 1", (redemption_id,)).fetchone()
            if row:
                reprint = reprint or bool(row[1])
                tx.execute("UPDATE print_jobs SET reprint = ?, lang = ?, updated_at = ? WHERE id = ?",
                           (int(reprint), lang, now, row[0]))
                return row[0], reprint
            cur = tx.execute(
                "INSERT INTO print_jobs (redemption_id, reprint, lang, state, created_at, updated_at) "
                "VALUES (?, ?, ?, 'pending', ?, ?)", (redemption_id, int(reprint), lang, now, now))
            return cur.lastrowid, reprint

    def _failed(self, job_id: int, err: PrinterError) -> None:
        now = timefmt.format(datetime.now(UTC))
        partial = int(getattr(err, "partial", False))
        with self._db, self.store.transaction() as tx:
            tx.execute("UPDATE print_jobs SET attempts = attempts + 1, fault = ?, error = ?, "
                       "updated_at = ?, reprint = max(reprint, ?) WHERE id = ?",
                       (err.fault, str(err), now, partial, job_id))

    def _finish(self, job_id: int, state: str, error: str | None = None) -> None:
        now = timefmt.format(datetime.now(UTC))
        with self._db, self.store.transaction() as tx:
            tx.execute("UPDATE print_jobs SET state = ?, attempts = attempts + ?, updated_at = ?, "
                       "printed_at = CASE WHEN ? = 'printed' THEN ? END, "
                       "error = coalesce(?, CASE WHEN ? = 'printed' THEN NULL ELSE error END) "
                       "WHERE id = ?",
                       (state, int(state == "printed"), now, state, now, error, state, job_id))

    def pending(self) -> list[dict]:
        """Receipts not printed yet, oldest first, with their last error."""
        with self._db:
            return self.store.rows(
                "SELECT id, redemption_id, reprint, lang, attempts, fault, error, created_at, "
                "updated_at FROM print_jobs WHERE state = 'pending' ORDER BY id")

    def jobs(self, redemption_id: str) -> list[dict]:
        """Every print job of one redemption (printed, pending, cancelled)."""
        with self._db:
            return self.store.rows(
                "SELECT * FROM print_jobs WHERE redemption_id = ? ORDER BY id", [redemption_id])

    # -- receipt content ----------------------------------------------------------
    def receipt_data(self, redemption_id: str, *, reprint: bool = False) -> receipt.ReceiptData:
        """What the receipt of ``redemption_id`` shows. Raises KioskError if unknown/undone."""
        with self._db:
            row = self.store.conn.execute(
                "SELECT reward_id, masked_code, at, clock, store, device, voided_by FROM redemptions "
                "WHERE id = ? AND kind = 'redeem'", (redemption_id,)).fetchone()
            have = self.store.current_list()
        if row is None:
            raise KioskError(Msg("no redemption {id} on this device", id=redemption_id))
        if row[6]:
            raise KioskError(Msg("redemption {id} was undone; no receipt", id=redemption_id))
        reward = have.rewards.get(row[0]) if have and row[0] else None
        return receipt.ReceiptData(
            redemption_id=redemption_id, business_name=self.settings.get("business_name", ""),
            reward_title=(reward or {}).get("title") or (row[0] or ""), reward=reward,
            masked_code=row[1],
            at=timefmt.parse(row[2]), clock=row[3], store=row[4], device=row[5],
            footer=self.settings.get("footer"), logo=self.settings.get("logo"),
            reprint=reprint, tz=_zone(self.settings.get("timezone")),
        )

    # -- state for doctor / status / staff menu -------------------------------------
    def status(self, probe: bool = True) -> dict:
        """Printer state and queue depth. ``probe`` asks the printer (short timeouts)."""
        info = {"url": self.printer.url, "available": self.printer.available,
                "pending": len(self.pending()), "state": "unknown", "message": ""}
        if self.last is not None:
            info.update(last_state=self.last.state, last_message=self.last.message)
        if not self.printer.available:  # "none": nothing to ask, with or without probe
            st = self.printer.status()
            return {**info, "state": st.state, "message": st.message}
        if not probe:
            return info
        if not self._lock.acquire(timeout=0.05):
            return {**info, "state": "printing", "message": printer_faults.STATES["printing"]}
        try:
            st = self.printer.status()
        finally:
            self._lock.release()
        transport = getattr(self.printer, "transport", None)
        if isinstance(transport, AutoUsbTransport):  # url "auto": say which one it chose
            info["chosen"] = transport.target if transport.chosen else None
        return {**info, "state": st.state, "message": st.message}

    def close(self) -> None:
        """Close the printer and this service's own database connection (never the
        caller's ``store``, which stays open)."""
        self.printer.close()
        self.store.close()


def _zone(name):
    if not name or not isinstance(name, str):
        return name or None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r; receipts use the system time zone", name)
        return None


def sample_data(settings: dict, *, store: str = "-", device: str = "-") -> receipt.ReceiptData:
    """A sample receipt for ``kiosk print-test`` (marked TEST PRINT, nothing recorded)."""
    return receipt.ReceiptData(
        redemption_id=uuid7(), business_name=settings.get("business_name") or "redeem-kiosk",
        reward_title={"en": "Free coffee", "uz": "Bepul qahva", "kk": "Тегін кофе",
                      "ru": "Бесплатный кофе"},
        reward={"type": "percent", "value": 10}, masked_code="TEST0001",
        at=datetime.now(UTC), clock="synced", store=store, device=device,
        footer=settings.get("footer"), logo=settings.get("logo"), sample=True,
        tz=_zone(settings.get("timezone")),
    )


# -- configuration --------------------------------------------------------------------
def printer_from_config(cfg: Config | None, *, url: str | None = None,
                        paper_mm: int | None = None, profile: str | None = None) -> ReceiptPrinter:
    """The printer described by ``[printer]``; bad values raise ConfigError.

    ``url``, ``paper_mm`` and ``profile`` override the file (``kiosk print-test
    --printer/--paper/--profile``); with an override ``cfg`` may be None.
    """
    section = cfg.section("printer") if cfg else Section(Path("--printer"), "printer", {})
    from_args = url is not None  # then errors name --printer, paths are the caller's
    url = url or section.get("url", str, "none")
    paper = paper_mm or section.choice("paper_mm", (80, 58), 80)
    profile = profile or section.get("profile", str, "default")
    timeout = section.get("timeout_s", (int, float), DEFAULT_TIMEOUT_S)
    if not 0 < timeout <= 60:
        raise section.error("timeout_s", Msg("must be more than 0 and at most 60 seconds, not {value}", value=timeout))
    text = section.choice("text", ("auto", "raster"), "auto")
    if url.startswith("preview://") and not url.startswith("preview:///") and not from_args:
        url = "preview://" + str(section.path_value("_", url[len("preview://"):]) or "")
    try:
        return open_printer(url, paper_mm=paper, profile=profile, timeout_s=timeout, text=text)
    except ValueError as exc:
        if from_args:
            raise ConfigError(Msg("--printer {url}: {problem}", url=url, problem=exc)) from None
        raise section.error("profile" if "profile" in str(exc) else "url", exc) from None


def settings_from_config(cfg: Config) -> dict:
    """Receipt content settings from ``[device]`` and ``[receipt]``."""
    section = cfg.section("receipt")
    footer = section.get("footer", (str, dict), None)
    logo = section.path_value("logo", None)
    if logo is not None and not logo.is_file():
        raise section.error("logo", Msg("{file} is not a file", file=logo))
    zone = section.get("timezone", str, "")
    if zone and _zone(zone) is None:
        raise section.error("timezone", Msg("{zone} is not a known time zone (e.g. Asia/Tashkent)", zone=repr(zone)))
    return {"business_name": cfg.business_name, "footer": footer,
            "logo": str(logo) if logo else None, "timezone": zone or None,
            "lang": cfg.language if cfg.language in LANGUAGES else "en"}


def from_config(cfg: Config, store: Store) -> PrintService:
    return PrintService(store, printer_from_config(cfg), settings_from_config(cfg))
