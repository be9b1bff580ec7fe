"""Checks of the attached devices: camera (and a decode from it), printer, GPIO.

Each backend is imported and opened only inside its check and released before the
check returns. Run doctor while the kiosk UI is stopped (`systemctl stop kiosk`):
a camera can be opened by one process at a time.
"""

import time

from kiosk.doctor import FAIL, OK, WARN, Check

SHORT_LOOK_S = 1.5  # decode attempt without --wait: a quick look that only warns
CAMERA_HINTS = {
    "picamera2": "check the ribbon cable (contacts, orientation), camera_auto_detect=1 in "
                 "config.txt, `rpicam-hello --list-cameras`; stop the UI first",
    "opencv": "is the USB camera plugged in (`ls /dev/video*`)? is the kiosk user in "
              "the video group?",
    "replay": "the replay path must exist and hold images or a video",
}


def camera_and_decode(ctx) -> list[Check]:
    section = ctx.cfg.section("camera")
    spec = section.get("source", str, "none")
    if spec == "none":
        return [Check("camera", WARN, "no camera configured ([camera] source = \"none\")",
                      "set [camera] source = \"picamera2\" (CSI camera) or \"opencv:0\" (USB)")]
    from kiosk.hardware.camera import open_source, settings_from_section
    from kiosk.hardware.scanner import decoder_from_settings
    settings = settings_from_section(section)
    hint = CAMERA_HINTS.get(spec.split(":", 1)[0], "")
    source = None
    try:
        source = open_source(spec, settings)
        source.start()
        frame = source.read(timeout=settings["frame_timeout"])
        if frame is None:
            return [Check("camera", FAIL, f"{spec}: opened but delivered no frame", hint)]
        h, w = frame.gray.shape
        streams = f"{w}x{h} frames"
        if frame.full is not None:
            streams += f" (and {frame.full.shape[1]}x{frame.full.shape[0]} full resolution)"
        checks = [Check("camera", OK, f"{spec}: delivers {streams}")]
        decoder = decoder_from_settings(section.get("decoder", str, "auto"), settings)
        checks.append(_decode(source, frame, decoder, ctx.options.decode_wait_s, settings))
        return checks
    except Exception as exc:  # any backend error is the finding itself
        return [Check("camera", FAIL, f"{spec}: {exc}", hint)]
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
            return Check("decode", OK, f"read {shown!r} with {found[0].decoder} "
                         f"after {frames} frame(s)")
        if time.monotonic() > deadline:
            break
        frame = source.read(timeout=settings["frame_timeout"])
    if not wait_s:
        return Check("decode", WARN, f"no QR code in {frames} frame(s) (quick look)",
                     "hold the test card 15-25 cm under the camera and run "
                     "`kiosk doctor --wait 20`")
    return Check("decode", FAIL, f"no QR code decoded in {wait_s:g} s ({frames} frames)",
                 "focus (lens_position), lighting without glare, distance 15-25 cm, "
                 "camera not too far off-axis")


def printer(ctx) -> Check:
    from kiosk import printing
    service = printing.from_config(ctx.cfg, ctx.store)
    try:
        st = service.status(probe=ctx.options.probe_printer)
    finally:
        service.printer.close()  # not service.close(): the store is shared
    state, pending = st["state"], st["pending"]
    url = st["url"] + (f" -> {st['chosen']}" if st.get("chosen") else "")
    text = f"{url}: {state}" + (f" - {st['message']}" if st.get("message") else "")
    waiting = f"; {pending} receipt(s) waiting to print" if pending else ""
    if state == "none":
        return Check("printer", WARN, "no printer configured", "set [printer] url "
                     "(usb://VID:PID, serial:///dev/ttyUSB0, tcp://host:9100)")
    if state in ("ok", "printing"):
        return Check("printer", WARN if pending else OK, text + waiting,
                     "`kiosk print-test`; waiting receipts print on the next retry" if pending else "")
    if state in ("paper_low", "unknown"):
        return Check("printer", WARN, text + waiting, "print a test page: `kiosk print-test`")
    return Check("printer", FAIL, text + waiting, "power, cable, paper, cover; "
                 "USB printers need the kiosk udev rule (`ls -l /dev/usb/lp*`, group lp)")


def gpio(ctx) -> Check:
    from kiosk.hardware.signals import Signals
    signals = Signals.from_config(ctx.cfg.section("gpio"))
    try:
        info = signals.describe()
    finally:
        signals.close()
    if info.get("problem"):
        return Check("gpio", FAIL, info["problem"], "the kiosk user must be in the gpio group; "
                     "check the pin numbers in [gpio] (BCM numbering)")
    parts = [f"LED {info['led']}" if info.get("led") else "",
             f"buzzer {info['buzzer']}" if info.get("buzzer") else "",
             "confirm button" if info.get("button") else ""]
    parts = [p for p in parts if p]
    if not parts:
        return Check("gpio", OK, "no LEDs, buzzer or button configured (optional)")
    return Check("gpio", OK, ", ".join(parts) + " ready")
