"""``kiosk doctor``: run every diagnostic, print OK/WARN/FAIL with fix hints.

Exit code 1 when any check FAILs (0 with only warnings), so scripts and the
technician's checklist can rely on it. ``--json`` prints ``{"checks": [...]}``.
"""

import argparse
import sys

from kiosk import config
from kiosk.cli import EXIT_FAIL, EXIT_OK
from kiosk.commands import add_lang_option, print_json
from kiosk.doctor import FAIL, Options, run_checks, skip_name, worst
from kiosk.errors import ConfigError
from kiosk.i18n import _, current

MARKS = {"OK": "  OK ", "WARN": " WARN", "FAIL": " FAIL"}


USES_PRINTER = True  # kiosk.cli prepares python-escpos first


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check config, camera, printer, GPIO, broker, data, system")
    p.add_argument("--json", action="store_true", help='print {"checks": [...]}')
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="look this long for a QR code (show the test card) and FAIL if none")
    p.add_argument("--skip", action="append", default=[], metavar="CHECK", type=_skip,
                   help="skip a check (database, code_list, outbox, sync, broker, camera, "
                        "printer, gpio, disk, clock, temperature, throttling)")
    add_lang_option(p, "the messages")
    p.set_defaults(handler=cmd_doctor)


def _skip(name: str) -> str:
    try:
        return skip_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_doctor(args) -> int:
    cfg, error = None, None
    try:
        cfg = config.load(config.locate(args.config))
    except ConfigError as exc:
        error = exc  # said in the command's language by the config check
    checks = run_checks(cfg, Options(decode_wait_s=max(args.wait, 0.0), skip=set(args.skip)),
                        config_error=error, lang=current())  # --lang or configured (kiosk.cli)
    if args.json:
        print_json({"status": worst(checks), "checks": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            print(f"{MARKS[c.status]}  {c.name:<12} {c.message}")
            if c.hint and c.status != "OK":
                print(f"{'':19}-> {c.hint}")
        summary = _("{failed} failed, {warnings} warnings").format(
            failed=sum(c.status == FAIL for c in checks),
            warnings=sum(c.status == "WARN" for c in checks))
        print(f"\n{worst(checks)}: {summary}", file=sys.stderr)
    return EXIT_FAIL if worst(checks) == FAIL else EXIT_OK
