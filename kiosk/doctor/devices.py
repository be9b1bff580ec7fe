"""Checks of the attached devices: camera (and a decode from it), printer, GPIO.

Each backend is imported and opened only inside its check and released before the
check returns. Run doctor while the kiosk UI is stopped (`systemctl stop kiosk`):
a camera can be opened by one process at a time.
"""

import time

from kiosk.doctor import FAIL, OK, WARN, Check
from kiosk.i18n import N_, _, current, say

SHORT_LOOK_S = 1.5  # decode attempt without --wait: a quick look that only warns
CAMERA_HINTS = {
    "picamera2": N_("check the ribbon cable (contacts, orientation), camera_auto_detect=1 in "
                    "config.txt, `rpicam-hello --list-cameras`; stop the UI first"),
    "opencv": N_("is the USB camera plugged in (`ls /dev/video*`)? is the kiosk user in "
                 "the video group?"),
    "replay": N_("the replay path must exist and hold images or a video"),
}


def camera_and_decode(ctx) -> list[Check]:
    section = ctx.cfg.section("camera")
    spec = section.get("source", str, "none")
    if spec == "none":
        return [Check("camera", WARN, _('no camera configured ([camera] source = "none")'),
                      _('set [camera] source = "picamera2" (CSI camera) or "opencv:0" (USB)'))]
    from kiosk.hardware.camera import open_source, settings_from_section
    from kiosk.hardware.scanner import decoder_from_settings
    settings = settings_from_section(section)
    hint = CAMERA_HINTS.get(spec.split(":", 1)[0])
    hint = _(hint) if hint else ""
    source = None
    try:
        source = open_source(spec, settings)
        source.start()
        frame = source.read(timeout=settings["frame_timeout"])
        if frame is None:
            return [Check("camera", FAIL, _("{camera}: opened but delivered no frame")
                          .format(camera=spec), hint)]
        h, w = frame.gray.shape
        if frame.full is None:
            delivers = _("{camera}: delivers {width}x{height} frames").format(camera=spec, width=w, height=h)
        else:
            delivers = _("{camera}: delivers {width}x{height} frames (and {full_width}x{full_height} full "
                         "resolution)").format(camera=spec, width=w, height=h,
                                               full_width=frame.full.shape[1], full_height=frame.full.shape[0])
        checks = [Check("camera", OK, delivers)]
        decoder = decoder_from_settings(section.get("decoder", str, "auto"), settings)
        checks.append(_decode(source, frame, decoder, ctx.options.decode_wait_s, settings))
        return checks
    except Exception as exc:  # any backend error is the finding itself
        return [Check("camera", FAIL, f"{spec}: {say(exc)}", hint)]
    finally:
        if source is not None:
            source.stop()


def _decode(source, frame, decoder, wait_s: float, settings) -> Check:
    """Look for any QR code in the frames for ``wait_s`` (or a short look), as the
    kiosk does: the lores frame and, where it is not enough, the full-resolution one."""
    from kiosk.hardware.scanner import decode_frame
    deadline = time.monotonic() + (wait_s or SHORT_LOOK_S)
    frames = 0
    while frame is not None:
        frames += 1
        found = decode_frame(decoder, frame)
        if found:
            text = found[0].text
            shown = text if len(text) <= 40 else text[:37] + "..."
            return Check("decode", OK, _("read {text} with {decoder} after {frames} frame(s)")
                         .format(text=repr(shown), decoder=found[0].decoder, frames=frames))
        if time.monotonic() > deadline:
            break
        frame = source.read(timeout=settings["frame_timeout"])
    if not wait_s:
        return Check("decode", WARN, _("no QR code in {frames} frame(s) (quick look)")
                     .format(frames=frames), _("hold the test card 15-25 cm under the camera "
                                               "and run `kiosk doctor --wait 20`"))
    return Check("decode", FAIL, _("no QR code decoded in {seconds} s ({frames} frames)").format(
        seconds=f"{wait_s:g}", frames=frames), _("focus (lens_position), lighting without glare, "
                                                 "distance 15-25 cm, camera not too far off-axis"))


def printer(ctx) -> Check:
    from kiosk import printing
    from kiosk.hardware.printer.faults import translate
    service = printing.from_config(ctx.cfg, ctx.store)
    try:
        st = service.status(probe=ctx.options.probe_printer)
    finally:
        service.printer.close()  # not service.close(): the store is shared
    state, pending = st["state"], st["pending"]
    url = st["url"] + (f" -> {st['chosen']}" if st.get("chosen") else "")
    message = translate(st["message"], current()) if st.get("message") else ""
    text = f"{url}: {state}" + (f" - {message}" if message else "")
    waiting = "; " + receipts_waiting(pending) if pending else ""
    if state == "none":
        return Check("printer", WARN, _("no printer configured"), _("set [printer] url "
                     "(usb://VID:PID, serial:///dev/ttyUSB0, tcp://host:9100)"))
    if state in ("ok", "printing"):
        return Check("printer", WARN if pending else OK, text + waiting,
                     _("`kiosk print-test`; waiting receipts print on the next retry") if pending else "")
    if state in ("paper_low", "unknown"):
        return Check("printer", WARN, text + waiting, _("print a test page: `kiosk print-test`"))
    return Check("printer", FAIL, text + waiting, _("power, cable, paper, cover; USB printers "
                 "need the kiosk udev rule (`ls -l /dev/usb/lp*`, group lp)"))


def receipts_waiting(count: int) -> str:
    return _("{count} receipt(s) waiting to print").format(count=count)


def gpio(ctx) -> Check:
    from kiosk.hardware.signals import Signals
    signals = Signals.from_config(ctx.cfg.section("gpio"))
    try:
        info = signals.describe()
    finally:
        signals.close()
    return gpio_check(info)


def gpio_check(info: dict) -> Check:
    """The gpio line from ``Signals.describe()`` (also the UI's, from the pins it holds)."""
    if info.get("problem"):
        return Check("gpio", FAIL, info["problem"], _("the kiosk user must be in the gpio group; "
                     "check the pin numbers in [gpio] (BCM numbering)"))
    parts = [_("LED {pin}").format(pin=info["led"]) if info.get("led") else "",
             _("buzzer {pin}").format(pin=info["buzzer"]) if info.get("buzzer") else "",
             _("confirm button") if info.get("button") else ""]
    parts = [p for p in parts if p]
    if not parts:
        return Check("gpio", OK, _("no LEDs, buzzer or button configured (optional)"))
    return Check("gpio", OK, _("{devices} ready").format(devices=", ".join(parts)))
