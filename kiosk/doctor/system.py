"""Checks of the machine: disk space, clock trust, CPU temperature, throttling, and why
the last boot ended."""

import shutil
import subprocess

from kiosk.doctor import FAIL, OK, WARN, Check
from kiosk.i18n import N_, _

DISK_FAIL_MB, DISK_WARN_MB = 100, 500
TEMP_WARN_C, TEMP_FAIL_C = 75.0, 82.0  # the Pi firmware starts throttling at 80-85 C
# vcgencmd get_throttled bits (Raspberry Pi documentation).
NOW_BITS = {0: N_("under-voltage"), 1: N_("ARM frequency capped"), 2: N_("throttled"),
            3: N_("soft temperature limit")}
PAST_BITS = {16: N_("under-voltage"), 17: N_("frequency capping"), 18: N_("throttling"),
             19: N_("soft temperature limit")}


def disk(ctx) -> Check:
    path = ctx.cfg.data_dir if ctx.cfg is not None else "/"
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return Check("disk", FAIL, f"{path}: {exc}", _("is the data partition mounted?"))
    free_mb = usage.free // (1024 * 1024)
    text = _("{free} MB free of {total} MB on {path}").format(
        free=f"{free_mb:,}", total=f"{usage.total // (1024 * 1024):,}", path=path)
    if free_mb < DISK_FAIL_MB:
        return Check("disk", FAIL, text, _("the database cannot grow: copy kiosk.sqlite off and "
                     "contact support; never delete it while redemptions are pending"))
    if free_mb < DISK_WARN_MB:
        return Check("disk", WARN, text, _("space is getting low"))
    return Check("disk", OK, text)


def clock(ctx) -> Check:
    if ctx.cfg is None:
        from kiosk.core.clock import Clock
        reading = Clock().read()
    else:
        reading = ctx.ledger.clock.read()
    when = reading.now.strftime("%Y-%m-%d %H:%M UTC")
    if reading.wall_behind_floor:
        return Check("clock", WARN, _("system clock is behind the newest time this kiosk has "
                     "seen; using {when} (unsynced)").format(when=when),
                     _("connect the network for NTP or fit the DS3231 RTC (docs/appliance.md)"))
    if reading.source == "unsynced":
        return Check("clock", WARN, _("{when}, not confirmed by NTP or an RTC").format(when=when),
                     _("expiry checks stay safe but may refuse too early/late; connect the "
                       "network (NTP) or fit the DS3231 RTC"))
    return Check("clock", OK, f"{when} ({reading.source})")


def temperature(ctx) -> Check | None:
    try:
        celsius = int(ctx.options.thermal_path.read_text().strip()) / 1000
    except (OSError, ValueError):
        return None  # not available on this machine
    text = _("CPU at {celsius} C").format(celsius=f"{celsius:.1f}")
    if celsius >= TEMP_FAIL_C:
        return Check("temperature", FAIL, text, _("the Pi is throttling: add a heatsink or fan, "
                     "give the case air"))
    if celsius >= TEMP_WARN_C:
        return Check("temperature", WARN, text, _("running hot: check case ventilation"))
    return Check("temperature", OK, text)


def throttling(ctx) -> Check | None:
    exe = shutil.which(ctx.options.vcgencmd)
    if exe is None:
        return None  # not a Raspberry Pi (or the tool is missing)
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True,
                             timeout=5).stdout
        value = int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return Check("throttling", WARN, _("cannot read `vcgencmd get_throttled` ({output})")
                     .format(output=repr(out)), "")
    now = [_(text) for bit, text in NOW_BITS.items() if value >> bit & 1]
    past = [_(text) for bit, text in PAST_BITS.items() if value >> bit & 1]
    hint = _("use the official power supply (5 V 3 A for a Pi 4, 5 A for a Pi 5) and a short "
             "cable; cool the board")
    if now:
        return Check("throttling", FAIL, _("now: {what} ({value})").format(
            what=", ".join(now), value=f"0x{value:x}"), hint)
    if past:
        return Check("throttling", WARN, _("since boot: {what} ({value})").format(
            what=", ".join(past), value=f"0x{value:x}"), hint)
    return Check("throttling", OK, _("no under-voltage or throttling since boot"))


WDIOF_CARDRESET = 0x20  # linux/watchdog.h: the last reboot was caused by the watchdog
# What systemd logs on an orderly shutdown or reboot (the previous boot's last lines).
# The appliance's persistent journal is a bind mount of the data partition, unmounted
# before the "Reached target" lines are written (the virtual Pi's orderly reboots all
# looked like power cuts): so also what is logged while it is still mounted, when the
# shutdown starts (logind; PID 1's StartLimitAction/FailureAction) and when the journal
# stops being flushed to it.
CLEAN_END = ("Reached target System Power Off", "Reached target System Reboot",
             "Reached target System Halt", "Reached target Power-Off",
             "Reached target Reboot", "systemd-shutdown",
             "System is rebooting", "System is powering down", "System is halting",
             "Rebooting: unit", "Powering off: unit",
             "Stopping systemd-journal-flush.service", "Unmounting var-log-journal.mount")


def last_boot(ctx) -> Check | None:
    """How the previous boot ended: clean, hardware watchdog, or power loss/crash. Reads
    the persistent journal (docs/appliance.md) and the watchdog's boot status."""
    exe = shutil.which(ctx.options.journalctl)
    if exe is None:
        return None  # no systemd journal on this machine
    try:
        done = subprocess.run([exe, "-b", "-1", "-n", "200", "-o", "short-iso", "--no-pager",
                               "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("last_boot", WARN, _("cannot read the journal ({error})").format(error=exc), "")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return Check("last_boot", OK, _("no journal of the previous boot (first boot, or the "
                     "journal is kept in RAM)"))
    ended = lines[-1].split(" ", 1)[0]
    if any(mark in line for line in lines[-60:] for mark in CLEAN_END):
        return Check("last_boot", OK, _("the previous boot ended cleanly ({ended})")
                     .format(ended=ended))
    try:
        status = int(ctx.options.watchdog_bootstatus.read_text().strip() or "0", 0)
    except (OSError, ValueError):
        status = 0
    if status & WDIOF_CARDRESET:
        return Check("last_boot", WARN, _("the hardware watchdog reset the kiosk (last log "
                     "line {ended})").format(ended=ended), _("`journalctl -b -1 -e` shows what "
                     "hung; call support if it happens again"))
    return Check("last_boot", WARN, _("the previous boot ended without a shutdown (power loss "
                 "or a crash; last log line {ended})").format(ended=ended),
                 _("check the power supply and cable; `journalctl -b -1 -e` shows the last lines"))
