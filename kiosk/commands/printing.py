"""``kiosk print-test``, ``kiosk reprint``, ``kiosk print-queue``: the receipt printer
from a terminal (sample receipts, reprints, the queue of receipts that failed)."""

import sys
from typing import TYPE_CHECKING

from kiosk import config, context
from kiosk.cli import EXIT_FAIL, EXIT_OK, load_config
from kiosk.commands import add_lang_option, print_json
from kiosk.config import LANGUAGES
from kiosk.core import receipt
from kiosk.errors import ConfigError, PrinterError
from kiosk.i18n import _, say

if TYPE_CHECKING:
    from kiosk import printing

# kiosk.printing and kiosk.hardware.printer are imported inside the commands: they load
# python-escpos (over 0.1 s), and every ``kiosk`` command imports this module to
# build its parser.


USES_PRINTER = True  # kiosk.cli prepares python-escpos first


def register(sub) -> None:
    test = sub.add_parser("print-test", help="print a sample receipt (nothing is recorded)")
    test.add_argument("--printer", metavar="URL",
                      help="printer URL (default: [printer] url of the config), e.g. "
                           "usb://04b8:0e15, tcp://192.168.1.50:9100, preview:///tmp/receipts")
    add_lang_option(test, "the receipt and the messages (all: one receipt in each)", extra=("all",))
    test.add_argument("--paper", type=int, choices=(58, 80), help="paper width in mm")
    test.add_argument("--profile", help="python-escpos printer profile, e.g. TM-T20II")
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=cmd_print_test)

    reprint = sub.add_parser("reprint", help="print a redemption's receipt again (marked REPRINT)")
    reprint.add_argument("id", help="the redemption id")
    add_lang_option(reprint, "the receipt and the messages")
    reprint.add_argument("--json", action="store_true")
    reprint.set_defaults(handler=cmd_reprint)

    queue = sub.add_parser("print-queue", help="list receipts that failed to print; --retry prints them")
    queue.add_argument("--retry", action="store_true", help="print the queued receipts now")
    add_lang_option(queue)
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(handler=cmd_print_queue)


def _config(args) -> config.Config | None:
    """The config, or None when --printer makes it optional and there is none."""
    try:
        return config.load(config.locate(args.config))
    except ConfigError:
        if args.printer:
            return None
        raise


def _printer(args, cfg):
    from kiosk import printing

    return printing.printer_from_config(cfg, url=args.printer, paper_mm=args.paper,
                                        profile=args.profile)


def cmd_print_test(args) -> int:
    from kiosk import printing

    cfg = _config(args)
    printer = _printer(args, cfg)
    settings = printing.settings_from_config(cfg) if cfg else {}
    langs = LANGUAGES if args.lang == "all" else [args.lang or settings.get("lang") or "en"]
    where = (cfg.store, cfg.device_id) if cfg else ("-", "-")
    results, faults = [], {}  # faults: lang -> the PrinterError, said in the command's language
    if not printer.available:
        print("kiosk: " + _("no printer configured: set [printer] url or pass --printer URL"), file=sys.stderr)
        return EXIT_FAIL
    for lang in langs:
        data = printing.sample_data(settings, store=where[0], device=where[1])
        try:
            path = printer.print_receipt(receipt.build(data, lang))
        except PrinterError as exc:
            results.append({"lang": lang, "printed": False, "fault": exc.fault, "message": str(exc)})
            faults[lang] = exc
            continue
        results.append({"lang": lang, "printed": True, "path": path})
    if args.json:
        print_json({"printer": printer.url, "results": results})
    for r in results if not args.json else []:
        if r["printed"]:
            text = _("printed -> {file}").format(file=r["path"]) if r.get("path") else _("printed")
        else:
            text = _("FAILED [{fault}]: {problem}").format(fault=r["fault"], problem=say(faults[r["lang"]]))
        print(f"{printer.url} [{r['lang']}]: {text}")
    return EXIT_OK if all(r["printed"] for r in results) else EXIT_FAIL


def _service(args) -> "printing.PrintService":
    from kiosk import printing

    cfg = load_config(args)
    return printing.from_config(cfg, context.open_store(cfg))


def _show(outcome: "printing.PrintOutcome", as_json: bool) -> int:
    if as_json:
        print_json({"ok": outcome.ok, "state": outcome.state, "message": outcome.message,
                    "fault": outcome.fault, "job_id": outcome.job_id, "path": outcome.path})
    else:
        print(f"{outcome.state}: {say(outcome.message)}")
    return EXIT_OK if outcome.ok else EXIT_FAIL


def cmd_reprint(args) -> int:
    svc = _service(args)
    try:
        return _show(svc.print_redemption(args.id, reprint=True,
                                          lang=args.lang or svc.settings["lang"]), args.json)
    finally:
        svc.close()


def cmd_print_queue(args) -> int:
    svc = _service(args)
    try:
        outcomes = svc.retry_pending() if args.retry else []
        jobs = svc.pending()
    finally:
        svc.close()
    if args.json:
        print_json({"printed": sum(o.ok for o in outcomes), "pending": jobs})
    else:
        for o in outcomes:
            print(f"{o.state}: {say(o.message)}")
        if not jobs:
            print(_("print queue is empty"))
        for j in jobs:
            flag = " " + _("REPRINT") if j["reprint"] else ""
            tries = _("tries {count}").format(count=j["attempts"])
            print(f"{j['created_at']}  {j['redemption_id']}  {tries}{flag}  "
                  f"[{j['fault'] or '-'}] {j['error'] or ''}")
    return EXIT_OK if not jobs else EXIT_FAIL
