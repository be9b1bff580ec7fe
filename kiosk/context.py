"""Builds the running pieces (store, clock, ledger) from a :class:`Config`."""

from pathlib import Path

from kiosk.config import Config
from kiosk.core.clock import RTC_DEVICE, SYNCED_FLAG, Clock
from kiosk.core.ledger import Identity, Ledger
from kiosk.core.store import DB_NAME, Store
from kiosk.errors import StoreError
from kiosk.i18n import Msg


def make_clock(cfg: Config) -> Clock:
    """The device clock; ``[clock]`` can move the NTP-synced flag file and the RTC device."""
    section = cfg.section("clock")
    flag = section.path_value("synced_flag", str(SYNCED_FLAG))
    rtc = section.get("rtc_device", str, str(RTC_DEVICE))
    return Clock(synced_flag=flag, rtc_device=Path(rtc) if rtc else None)


def open_store(cfg: Config) -> Store:
    """The device database in ``data_dir`` (created and migrated on first use).

    A database file that exists but is empty is refused, not silently made into a new
    empty database: the redemption history it should hold would be gone unnoticed."""
    path = cfg.data_dir / DB_NAME
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False  # absent (a new device) or unreadable (Store reports it)
    if empty:
        raise StoreError(Msg("database {path} is empty (0 bytes): its redemption history is missing. "
                             "Restore kiosk.sqlite from a copy (docs/technician.md section 5); only "
                             "on a new device, delete the empty file", path=path))
    return Store.in_dir(cfg.data_dir)


def open_ledger(cfg: Config, store: Store | None = None, clock: Clock | None = None) -> Ledger:
    """The ledger for this device's identity and redeem settings; pass ``store`` or
    ``clock`` to share ones the caller already has open."""
    return Ledger(
        store or open_store(cfg),
        Identity(cfg.device_id, cfg.store, cfg.program),
        clock=clock or make_clock(cfg),
        lang=cfg.language,
        pattern=cfg.pattern,
        void_window=cfg.void_window,
    )
