"""``kiosk scan``: the camera pipeline without the UI, one line per scanned code.

Technicians use it to test a camera on site; the benchmark and tests drive the
pipeline through it. Reads ``[camera]`` from the config when ``--config`` or
``$KIOSK_CONFIG`` is given (or the default config file exists); ``--camera`` and
``--decoder`` override it. A ``replay:`` source plays once and the command exits
at its end; a live camera runs until Ctrl-C (or ``--max-events``).
"""

import os
import sys

from kiosk import config as kiosk_config
from kiosk.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from kiosk.commands import add_lang_option, print_json
from kiosk.hardware.camera import SPEC_FORMS, open_source
from kiosk.hardware.decoder import NAMES, make_decoder
from kiosk.hardware.scanner import DEFAULT_REPEAT_WINDOW, Scanner, from_config
from kiosk.i18n import Msg, _, say


def register(sub) -> None:
    scan = sub.add_parser(
        "scan", help="scan QR codes from a camera or a recording and print them",
        description="Runs the scanning pipeline headless and prints one line per new code.")
    scan.add_argument("--camera", metavar="SOURCE", help=f"frame source: {SPEC_FORMS}")
    scan.add_argument("--decoder", metavar="NAME",
                      help=f"{', '.join(NAMES)} or a chain like zxing,pyzbar (default: auto)")
    scan.add_argument("--repeat-window", type=float, metavar="SECONDS",
                      help="same code within this many seconds is one event (default 3)")
    scan.add_argument("--max-events", type=int, metavar="N", help="stop after N events")
    scan.add_argument("--json", action="store_true", help="one JSON object per line")
    add_lang_option(scan, "the messages (the code lines stay as they are)")
    scan.set_defaults(handler=cmd_scan)


def _explicit_config(args) -> bool:
    return bool(args.config or os.environ.get("KIOSK_CONFIG"))


def build_scanner(args, on_event) -> Scanner:
    """The scanner from config and/or flags; a replay always plays once here."""
    use_config = _explicit_config(args) or (not args.camera and kiosk_config.DEFAULT_PATH.exists())
    if use_config:
        cfg = kiosk_config.load(kiosk_config.locate(args.config))
        scanner = from_config(cfg, on_event, camera=args.camera, decoder=args.decoder, once=True)
    elif args.camera:
        scanner = Scanner(open_source(args.camera, once=True), make_decoder(args.decoder or "auto"),
                          on_event, repeat_window=DEFAULT_REPEAT_WINDOW)
    else:
        raise _Usage(Msg("no camera: pass --camera SOURCE ({forms}) or --config with a [camera] section",
                         forms=SPEC_FORMS))
    if args.repeat_window is not None:
        if args.repeat_window < 0:
            raise _Usage(Msg("--repeat-window must not be negative"))
        scanner.repeats.window = args.repeat_window
    return scanner


class _Usage(Exception):
    pass


def _line(event, width: int) -> str:
    """One event as text; ``width``: the decoder column's (its longest label)."""
    payload = event.payload.encode("unicode_escape").decode("ascii") if any(
        c in event.payload for c in "\r\n\t") else event.payload
    return f"frame {event.frame_index:>6}  {event.decoder:<{width}} {event.latency_ms:7.1f} ms  {payload}"


def cmd_scan(args) -> int:
    count = 0

    def on_event(event):
        nonlocal count
        count += 1
        try:
            if args.json:
                print_json(event.to_json())
            else:
                print(_line(event, width))
            sys.stdout.flush()
        except BrokenPipeError:  # `kiosk scan | head -2`: the reader has enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            scanner.stop(timeout=0)
            return
        if args.max_events and count >= args.max_events:
            scanner.stop(timeout=0)

    try:
        scanner = build_scanner(args, on_event)
    except _Usage as exc:
        print("kiosk scan:", say(exc), file=sys.stderr)
        return EXIT_USAGE
    width = max(len(label) for label in scanner.decoder.labels())
    if not scanner.source.available:
        print("kiosk scan:", _("camera source {name} means no camera; pass --camera SOURCE ({forms})").format(
            name=repr(scanner.source.name), forms=SPEC_FORMS), file=sys.stderr)
        return EXIT_FAIL
    stats = scanner.run()  # raises the camera's HardwareError: cli prints it, exit 1
    print("kiosk scan:", _("{events} code(s) from {frames} frame(s) ({dropped} dropped while decoding)").format(
        events=stats.events, frames=stats.frames_read, dropped=stats.frames_dropped), file=sys.stderr)
    return EXIT_OK
