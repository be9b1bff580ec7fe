"""``kiosk ui``, ``kiosk demo``, ``kiosk screenshots``, ``kiosk pin-hash``: the touch screen."""

import argparse
import getpass
import os
import sys
import tempfile
from pathlib import Path

from kiosk import config
from kiosk.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from kiosk.commands import add_lang_option
from kiosk.i18n import _, say


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} must look like 800x480") from None
    return w, h


# No USES_PRINTER: the touch screen imports python-escpos on its first receipt
# (kiosk.hardware.escpos_setup.load prepares it then), not at start.


def register(sub) -> None:
    ui = sub.add_parser("ui", help="run the touch screen (the appliance's main program)")
    ui.add_argument("--size", type=_size, help="window size, e.g. 1024x600 (default: [ui] or 800x480)")
    ui.add_argument("--fullscreen", action=argparse.BooleanOptionalAction, default=None,
                    help="full screen (default: [ui] fullscreen)")
    ui.add_argument("--verbose", action="store_true", help="Kivy's log on the console")
    ui.add_argument("--camera", metavar="SPEC",
                    help="camera for setup QRs while not provisioned (default picamera2)")
    ui.set_defaults(handler=cmd_ui)

    demo = sub.add_parser("demo", help="the whole flow on a laptop: demo cards, no hardware")
    demo.add_argument("--size", type=_size, default=(800, 480))
    demo.add_argument("--dir", type=Path, help="keep the demo data here (default: a temp dir)")
    demo.add_argument("--verbose", action="store_true")
    demo.add_argument("--exit-after", type=float, metavar="SECONDS",
                      help="close by itself after SECONDS (smoke test)")
    add_lang_option(demo, "the console lines (the screen starts in English)")
    demo.set_defaults(handler=cmd_demo)

    shots = sub.add_parser("screenshots", help="PNG of every screen in every language")
    shots.add_argument("--out", type=Path, required=True)
    shots.add_argument("--sizes", default="800x480,720x1280")
    shots.add_argument("--langs", default="en,uz,kk,ru")
    shots.set_defaults(handler=cmd_screenshots)

    ph = sub.add_parser("pin-hash", help="make the [ui] pin_hash line for a staff PIN")
    ph.add_argument("--pin", help="the PIN (default: asked twice, not echoed)")
    add_lang_option(ph, "the prompts and the comment")
    ph.set_defaults(handler=cmd_pin_hash)


def cmd_ui(args) -> int:
    from kiosk.ui import runner

    return runner.run(config.locate(args.config), size=args.size, fullscreen=args.fullscreen,
                      verbose=args.verbose, camera=args.camera)


def no_display() -> bool:
    """True when a window could not be shown: no X or Wayland display and no SDL video
    driver chosen (the appliance sets SDL_VIDEODRIVER=kmsdrm and needs neither)."""
    return not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))


def cmd_demo(args) -> int:
    from kiosk.ui import demo, runner

    if no_display():
        print("kiosk demo:", _("no display (DISPLAY is not set). Run it on a desktop, or headless "
                               "under a virtual display: {xvfb}; `{shots}` renders every screen to "
                               "PNG files.").format(xvfb="xvfb-run -a kiosk demo --exit-after 60",
                                                    shots="kiosk screenshots --out DIR"),
              file=sys.stderr)
        return EXIT_USAGE
    os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
    base = args.dir or Path(tempfile.mkdtemp(prefix="kiosk-demo-"))
    target = base / "kiosk" if args.dir is None else base
    if target.exists() and any(target.iterdir()):
        print("kiosk demo:", _("{folder} is not empty; choose a new --dir").format(folder=target),
              file=sys.stderr)
        return EXIT_USAGE
    built = demo.build(target)
    print(_("demo kiosk in {folder}\n  staff PIN {pin}\n  receipts -> {receipts}\n  cards    -> {cards}\n"
            "  a card comes {pause:.0f} s after each customer; Space shows the next at once").format(
              folder=built.data_dir, pin=built.pin, receipts=built.receipts_dir, cards=built.cards_dir,
              pause=demo.DEAL_PAUSE))
    return runner.run(built.config, size=args.size, fullscreen=False, verbose=args.verbose,
                      demo_settings={"pin_hint": built.pin}, exit_after=args.exit_after,
                      demo_deck=built.cards_dir)


def cmd_screenshots(args) -> int:
    from kiosk.ui import screenshots

    try:
        sizes = [_size(s) for s in args.sizes.split(",") if s]
    except ValueError as exc:
        print(f"kiosk screenshots: {exc}", file=sys.stderr)
        return EXIT_USAGE
    langs = [lang for lang in args.langs.split(",") if lang]
    written = screenshots.render_all(args.out, sizes, langs)
    print(f"wrote {len(written)} screenshots to {args.out}")
    return EXIT_OK if written else EXIT_FAIL


def cmd_pin_hash(args) -> int:
    from kiosk.ui import pin

    value = args.pin
    if value is None:
        value = getpass.getpass(_("staff PIN ({least}-{most} digits): ").format(
            least=pin.MIN_DIGITS, most=pin.MAX_DIGITS))
        if getpass.getpass(_("again: ")) != value:
            print("kiosk pin-hash:", _("the two PINs differ"), file=sys.stderr)
            return EXIT_USAGE
    try:
        setting = f'pin_hash = "{pin.make_hash(value)}"'  # the TOML line itself, as is
    except ValueError as exc:
        print("kiosk pin-hash:", say(exc), file=sys.stderr)
        return EXIT_USAGE
    print(setting, "  # " + _("put this line in the [ui] section of kiosk.toml"))
    return EXIT_OK
