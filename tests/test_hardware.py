"""Real-hardware checks, for a technician on a Raspberry Pi: ``pytest -m hardware``.

Every test here needs the real part and skips itself anywhere else (a laptop, CI, the
virtual Pi), so the normal suite stays hardware-free. On a device, stop the UI first
(``systemctl stop kiosk``: a camera opens in one process at a time) and point
``KIOSK_CONFIG`` at the device config (default ``/etc/kiosk/kiosk.toml``):

    sudo systemctl stop kiosk
    sudo /opt/kiosk/venv/bin/pip install 'pytest>=8,<10'   # the image ships no test tools
    sudo -u kiosk /opt/kiosk/venv/bin/python -m pytest -m hardware -p no:cacheprovider test_hardware.py
    sudo systemctl start kiosk

(copy this one file to the device; it imports only the installed ``kiosk`` package).

The checks use the same code paths as the kiosk (camera sources, print service,
signals), not separate test drivers.
"""

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.hardware

MODEL = Path("/proc/device-tree/model")
CONFIG = Path(os.environ.get("KIOSK_CONFIG", "/etc/kiosk/kiosk.toml"))


def _pi_model() -> str:
    try:
        return MODEL.read_text(errors="replace").rstrip("\0")
    except OSError:
        return ""


ON_PI = "Raspberry Pi" in _pi_model()
needs_pi = pytest.mark.skipif(not ON_PI, reason="not a Raspberry Pi (no /proc/device-tree/model)")


@pytest.fixture(scope="module")
def cfg():
    if not ON_PI:
        pytest.skip("not a Raspberry Pi")
    if not CONFIG.is_file():
        pytest.skip(f"no device config at {CONFIG} (set KIOSK_CONFIG)")
    from kiosk import config

    return config.load(CONFIG)


@needs_pi
def test_camera_delivers_frames_that_change(cfg):
    section = cfg.section("camera")
    spec = section.get("source", str, "none")
    if spec == "none":
        pytest.skip('[camera] source = "none"')
    from kiosk.hardware.camera import open_source, settings_from_section

    settings = settings_from_section(section)
    source = open_source(spec, settings)
    source.start()
    try:
        frames = [source.read(timeout=settings["frame_timeout"]) for _ in range(10)]
    finally:
        source.stop()
    assert all(f is not None for f in frames), "the camera stopped delivering frames"
    h, w = frames[0].gray.shape
    assert (w, h) >= (320, 240)
    assert frames[-1].gray.std() > 1.0, "flat frames: lens cap, no light or a dead sensor"


@needs_pi
def test_printer_answers_its_status(cfg, tmp_path):
    from kiosk import printing
    from kiosk.core.store import Store

    url = cfg.section("printer").get("url", str, "none")
    if url == "none":
        pytest.skip('[printer] url = "none"')
    service = printing.from_config(cfg, Store.in_dir(tmp_path))  # not the kiosk's queue
    try:
        status = service.status(probe=True)
    finally:
        service.printer.close()
    assert status["state"] in ("ok", "paper_low"), f"printer {url}: {status}"


@needs_pi
def test_gpio_outputs_drive_and_read_back(cfg):
    gpio = cfg.section("gpio")
    pin = gpio.get("green_led", int, None) or gpio.get("red_led", int, None)
    if pin is None:
        pytest.skip("no LED pin in [gpio]")
    from gpiozero import LED

    led = LED(pin)  # the default pin factory of the device (lgpio on bookworm)
    try:
        led.on()
        assert led.is_lit and led.value == 1
        led.off()
        assert not led.is_lit
    finally:
        led.close()


@needs_pi
def test_hardware_watchdog_is_armed_by_systemd():
    device = Path("/dev/watchdog0")
    assert device.exists(), "no /dev/watchdog0: dtparam=watchdog=on in config.txt?"
    timeout = Path("/sys/class/watchdog/watchdog0/timeout")
    if timeout.exists():
        assert 1 <= int(timeout.read_text()) <= 60
    state = Path("/sys/class/watchdog/watchdog0/state")
    if state.exists():
        assert state.read_text().strip() == "active", "systemd's RuntimeWatchdogSec is not set"


@needs_pi
def test_rtc_keeps_time_near_the_system_clock():
    rtc = Path("/sys/class/rtc/rtc0/since_epoch")
    if not rtc.exists():
        pytest.skip("no RTC")
    drift = abs(int(rtc.read_text()) - time.time())
    assert drift < 120, f"the RTC is {drift:.0f} s off: no battery, or never set"
