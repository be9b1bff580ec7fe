"""Which time the kiosk may trust (DESIGN.md section 7).

A Raspberry Pi has no clock battery: after a power cut without network it may boot
in the past. Expiry decisions therefore use the wall clock, but never earlier than a
floor: the newest ``issued_at`` of a verified code list or the kiosk's own last
redemption. Every event records which clock it used:

* ``synced``   - NTP synchronisation confirmed (systemd-timesyncd's flag file);
* ``rtc``      - a hardware real-time clock that kept time (e.g. DS3231 overlay, a Pi 5
  with its battery): see :func:`rtc_kept_time`;
* ``unsynced`` - neither, or the wall clock was behind the floor.

A signed list may raise the floor only a little ahead of the best time
(:func:`latest_issue`): a list "issued" in 2099 would otherwise make every code expire
and every later list look expired. HQ's way back from a floor already too far ahead
is a list signed with ``clock_reset`` (docs/technician.md, "Clock far ahead").
"""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kiosk.core import timefmt

SYNCED_FLAG = Path("/run/systemd/timesync/synchronized")
RTC_DEVICE = Path("/dev/rtc0")
RTC_SYSFS = Path("/sys/class/rtc")
RTC_PLAUSIBLE = 1735689600  # 2025-01-01 UTC: an RTC reading earlier than this lost its time
RTC_TOLERANCE_S = 300       # an RTC that kept time agrees with the system clock it set
SOURCES = ("synced", "rtc", "unsynced")
_ASK = object()  # read(): ask the floor function
# How far ahead of the device's best time a code list's issued_at may be: the clock
# skew between HQ and a device whose time is confirmed; and, when it is not, the time
# a Pi without a clock battery may have been switched off (it boots with the time of
# its last shutdown).
LEAD_TRUSTED = timedelta(hours=1)
LEAD_UNSYNCED = timedelta(days=7)


@dataclass(frozen=True)
class Reading:
    now: datetime
    source: str  # one of SOURCES
    wall_behind_floor: bool = False
    wall: datetime | None = None  # the wall clock itself (when behind the floor: earlier)
    wall_source: str | None = None  # its own source, ignoring the floor

    def of_wall(self) -> "Reading":
        """The wall clock's reading without the floor (for a signed clock reset)."""
        if self.wall is None:
            return self
        return Reading(self.wall, self.wall_source or self.source)


def latest_issue(reading: Reading) -> datetime:
    """The latest ``issued_at`` a code list may carry at this reading."""
    return reading.now + (LEAD_UNSYNCED if reading.source == "unsynced" else LEAD_TRUSTED)


def as_reading(now: "datetime | Reading") -> Reading:
    """A caller's time as a :class:`Reading`; a bare datetime, whose source is not
    known, gets the lenient bound of an unsynced clock."""
    return now if isinstance(now, Reading) else Reading(now, "unsynced")


class Clock:
    """Best trustworthy time. ``floor`` returns the newest time already seen, or None."""

    def __init__(self, floor: Callable[[], datetime | None] | None = None, *,
                 wall: Callable[[], float] = time.time, synced_flag: Path = SYNCED_FLAG,
                 rtc_device: Path | None = RTC_DEVICE, source_ttl: float = 1.0):
        self.floor, self.wall = floor, wall
        self.synced_flag, self.rtc_device = synced_flag, rtc_device
        self.source_ttl = source_ttl  # seconds a source() answer is reused (two stat calls)
        self._source: tuple[float, str] | None = None

    def source(self) -> str:
        now = time.monotonic()
        if self._source is None or now - self._source[0] >= self.source_ttl:
            self._source = (now, self._probe())
        return self._source[1]

    def _probe(self) -> str:
        if self.synced_flag and os.path.exists(self.synced_flag):
            return "synced"
        if self.rtc_device and rtc_kept_time(self.rtc_device, self.wall()):
            return "rtc"
        return "unsynced"

    def read(self, floor: datetime | None | object = _ASK) -> Reading:
        """The time to use; ``floor`` may be passed by a caller that knows it already."""
        now = timefmt.from_epoch(self.wall())
        if floor is _ASK:
            floor = self.floor() if self.floor else None
        if floor is not None and now < floor:
            return Reading(floor, "unsynced", wall_behind_floor=True, wall=now,
                           wall_source=self.source())
        return Reading(now, self.source())


def rtc_kept_time(device: Path, now: float, sysfs: Path = RTC_SYSFS) -> bool:
    """Whether the real-time clock ``device`` (``/dev/rtc0``) kept time, not merely exists.

    A Pi 5 always has ``/dev/rtc0``, battery or not; without a battery it restarts
    from 1970 after a power cut, and a DS3231 whose battery died refuses to be read
    (its oscillator-stop flag). So the RTC is trusted only when the kernel can read it
    (``/sys/class/rtc/rtcN/since_epoch``), its time is plausible (not before
    ``RTC_PLAUSIBLE``) and the system clock agrees with it (systemd/hwclock set the
    system clock from it at boot) within ``RTC_TOLERANCE_S``. ``device`` may also be a
    folder laid out like that sysfs folder (tests).
    """
    device = Path(device)
    if not device.exists():
        return False
    info = device if device.is_dir() else sysfs / device.name
    try:
        rtc = int((info / "since_epoch").read_text().strip())
    except (OSError, ValueError):  # EINVAL: the RTC says its time is invalid
        return False
    return rtc >= RTC_PLAUSIBLE and abs(rtc - now) <= RTC_TOLERANCE_S


class FixedClock(Clock):
    """A clock for tests and demos: time stands where it is set."""

    def __init__(self, at: datetime, source: str = "synced"):
        super().__init__()
        self.at, self._source = at, source

    def read(self, floor: datetime | None | object = None) -> Reading:
        return Reading(self.at, self._source)
