"""Checks of the device's own data: config, database, code list, outbox, sync agent."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kiosk.doctor import FAIL, OK, WARN, Check
from kiosk.i18n import N_, _, say

FSTAB = Path("/etc/fstab")
SKIPPED = N_("; database, code list, outbox, sync, print queue and clock checks not run")

LIST_OLD = timedelta(days=3)        # no newer list for this long: sync is probably broken
LIST_EXPIRING = timedelta(hours=24)
OUTBOX_STUCK = timedelta(hours=1)   # oldest unsent redemption older than this


class DataUnavailable(Exception):
    """A check needs the database, but the data partition check already FAILed: the
    check is left out (it could only repeat that failure as a crash)."""


class Context:
    """What the checks share: the config, options and a lazily opened store."""

    def __init__(self, cfg, options):
        self.cfg, self.options = cfg, options
        self._ledger = None
        self.data_ok = True  # False: data_partition FAILed; checks needing the store skip

    @property
    def ledger(self):
        if not self.data_ok:
            raise DataUnavailable()
        if self._ledger is None:
            from kiosk import context
            self._ledger = context.open_ledger(self.cfg)
        return self._ledger

    @property
    def store(self):
        return self.ledger.store

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.store.close()


def config_check(cfg, error) -> Check:
    if cfg is None:
        return Check("config", FAIL, say(error) if error else _("no configuration loaded"),
                     _("fix the named key, or re-provision: put the kiosk.toml from "
                       "`kiosk-hq enroll` on the boot partition and reboot"))
    if not cfg.trusted_keys:
        return Check("config", WARN, _("{path}: no [trust.keys]; no code list can be verified")
                     .format(path=cfg.path), _("re-provision with `kiosk-hq enroll --trust KEY_ID=PEM`"))
    if cfg.warnings:
        return Check("config", WARN, "; ".join(say(w) for w in cfg.warnings),
                     _("fix or remove the key: an ignored key means its setting is not in effect"))
    named = f" ({cfg.name!r})" if cfg.name else ""
    return Check("config", OK, _("device {device}{name}, store {store}, program {program}, "
                                 "trusts {keys} ({path})").format(
        device=cfg.device_id, name=named, store=cfg.store, program=cfg.program,
        keys=", ".join(sorted(cfg.trusted_keys)), path=cfg.path))


def _fstab_source(folder: Path, fstab: Path) -> str | None:
    """What /etc/fstab mounts on ``folder`` (e.g. ``LABEL=kiosk-data``), or None."""
    try:
        lines = fstab.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and Path(fields[1]) == folder:
            return fields[0]
    return None


def data_partition(cfg, fstab: Path = FSTAB) -> Check:
    """The data folder exists, is the partition fstab mounts there and is writable.
    When this FAILs, the checks that need the database are left out."""
    folder = Path(cfg.data_dir)
    hint = _("redemptions cannot be recorded: copy kiosk.sqlite off the card from a "
             "laptop (docs/technician.md section 5) and call support; "
             "`journalctl -b -u var-lib-kiosk.mount` shows why")
    source = _fstab_source(folder, fstab)
    if source and not os.path.ismount(folder):
        return Check("data_partition", FAIL, _("the data partition ({source}) is not mounted on "
                     "{folder}: damaged or missing").format(source=source, folder=folder)
                     + _(SKIPPED), hint)
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # made on first use
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return Check("data_partition", FAIL, _("{folder} is read-only (the file system found an "
                     "error and stopped writes, errors=remount-ro)").format(folder=folder)
                     + _(SKIPPED), hint)
    if not os.access(existing, os.W_OK | os.X_OK):
        return Check("data_partition", FAIL, _("{folder} is not writable for this user "
                     "(uid {uid})").format(folder=folder, uid=os.getuid()),
                     _("run as the kiosk user: `sudo -u kiosk /opt/kiosk/venv/bin/kiosk doctor`"))
    if source:
        return Check("data_partition", OK, _("{folder} is writable, its own partition ({source})")
                     .format(folder=folder, source=source))
    return Check("data_partition", OK, _("{folder} is writable, no partition of its own")
                 .format(folder=folder))


def database(ctx) -> Check:
    from kiosk.errors import StoreError
    try:
        path = ctx.store.path
        ok = ctx.store.conn.execute("PRAGMA quick_check").fetchone()[0]
    except StoreError as exc:
        return Check("database", FAIL, say(exc), _("check the data partition (dmesg, fsck); "
                     "never delete kiosk.sqlite while redemptions are pending"))
    if ok != "ok":
        return Check("database", FAIL, _("{path}: integrity check says {result}").format(
            path=path, result=ok), _("copy kiosk.sqlite off the device and contact support"))
    return Check("database", OK, _("{path} opens and passes the integrity check").format(path=path))


def code_list(ctx) -> Check:
    from kiosk.core import importer, timefmt
    have = ctx.store.current_list()
    if have is None:
        return Check("code_list", FAIL, _("no code list installed: every scan is refused"),
                     _("connect the network (kiosk-sync fetches it) or "
                       "`kiosk codes import /media/usb/bundle.tar`"))
    now = datetime.now(UTC)
    text = _("version {version}, {count} codes, issued {issued}, expires {expires}").format(
        version=have.version, count=f"{have.code_count:,}", issued=timefmt.format(have.issued_at),
        expires=timefmt.format(have.expires_at))
    if have.expires_at <= now:
        return Check("code_list", FAIL, _("{list}: EXPIRED").format(list=text),
                     _("get a new list from HQ (network or USB); until then every scan is refused"))
    if have.expires_at - now < LIST_EXPIRING or now - have.issued_at > LIST_OLD:
        return Check("code_list", WARN, _("{list}: old or about to expire").format(list=text),
                     _("check `kiosk sync-status`; HQ must publish a fresh list"))
    waiting = importer.salt_wait(ctx.store)
    if waiting:
        return Check("code_list", WARN, _("{list}; version {version} (new code salt) waits: {why}")
                     .format(list=text, version=waiting["version"], why=say(waiting["why"])),
                     _("this version stays in use meanwhile; check the network and "
                       "`kiosk sync-status` (redemptions must reach HQ)"))
    return Check("code_list", OK, text)


def outbox(ctx) -> Check:
    from kiosk.core import timefmt
    row = ctx.store.conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    depth, oldest = row[0], timefmt.parse_optional(row[1])
    if depth == 0:
        return Check("outbox", OK, _("no redemptions waiting to be sent"))
    age = datetime.now(UTC) - oldest
    text = _("{count} redemption(s) waiting to be sent, oldest {age} old").format(
        count=depth, age=_ago(age))
    if age > OUTBOX_STUCK:
        return Check("outbox", WARN, text, _("they are safe on this device; check the network "
                     "and the broker check; do not swap the device until this is 0"))
    return Check("outbox", OK, text)


def sync_agent(ctx) -> Check:
    from kiosk.core.syncstate import read_status
    st = read_status(ctx.store)
    if not st.get("agent_running"):
        return Check("sync", WARN, _("kiosk-sync is not running (no heartbeat in the database)"),
                     "`systemctl status kiosk-sync`; `journalctl -u kiosk-sync -b`")
    if not st.get("connected"):
        error = say(st["last_error"]) if st.get("last_error") else _("not connected")
        return Check("sync", WARN, _("kiosk-sync runs but is offline: {error}").format(error=error),
                     _("see the broker check below"))
    return Check("sync", OK, _("kiosk-sync connected; last sync {when}").format(
        when=st.get("last_sync") or _("never")))


def _ago(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    if minutes < 120:
        return _("{n} min").format(n=minutes)
    hours = minutes // 60
    return _("{n} h").format(n=hours) if hours < 48 else _("{n} days").format(n=hours // 24)
