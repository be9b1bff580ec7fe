"""An RTC is trusted only when it kept time (issue 12, defect 8).

A Pi 5 always has /dev/rtc0, battery or not. The sysfs folder the kernel gives every
RTC (/sys/class/rtc/rtcN) is laid out here in a temporary folder; the virtual Pi
(scripts/vpi) checks the real one (QEMU's PL031) in its redemption step."""

import time

from kiosk.core.clock import RTC_PLAUSIBLE, Clock, rtc_kept_time


def rtc(tmp_path, since_epoch: str | None):
    sysfs = tmp_path / "sys-class-rtc"
    (sysfs / "rtc0").mkdir(parents=True)
    if since_epoch is not None:
        (sysfs / "rtc0/since_epoch").write_text(since_epoch + "\n")
    (tmp_path / "dev").mkdir()
    dev = tmp_path / "dev/rtc0"
    dev.touch()
    return dev, sysfs


def test_an_rtc_that_kept_time_is_trusted(tmp_path):
    now = time.time()
    dev, sysfs = rtc(tmp_path, str(int(now) - 2))
    assert rtc_kept_time(dev, now, sysfs)


def test_a_battery_less_rtc_back_in_1970_is_not(tmp_path):
    now = time.time()
    dev, sysfs = rtc(tmp_path, "37")  # a Pi 5 without battery after a power cut
    assert not rtc_kept_time(dev, now, sysfs)
    dev, sysfs = rtc(tmp_path / "b", str(RTC_PLAUSIBLE + 10))  # plausible, but hours off
    assert not rtc_kept_time(dev, now, sysfs)


def test_an_rtc_that_refuses_to_be_read_or_is_missing_is_not(tmp_path):
    dev, sysfs = rtc(tmp_path, None)  # DS3231 with its oscillator-stop flag: EINVAL
    assert not rtc_kept_time(dev, time.time(), sysfs)
    assert not rtc_kept_time(tmp_path / "no-rtc", time.time(), sysfs)


def test_the_clock_records_rtc_only_for_a_trusted_rtc(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "since_epoch").write_text(f"{int(time.time())}\n")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "since_epoch").write_text("0\n")
    flag = tmp_path / "not-synced"
    assert Clock(synced_flag=flag, rtc_device=good).read(None).source == "rtc"
    assert Clock(synced_flag=flag, rtc_device=bad).read(None).source == "unsynced"
