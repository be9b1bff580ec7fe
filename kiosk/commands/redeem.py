"""``kiosk redeem``, ``kiosk void``, ``kiosk history``: the counter from a terminal."""

from datetime import UTC, datetime, time

from kiosk import context
from kiosk.cli import EXIT_FAIL, EXIT_OK, load_config
from kiosk.commands import add_lang_option, print_json
from kiosk.core import timefmt
from kiosk.core.messages import detail_line, reason
from kiosk.errors import VoidError
from kiosk.i18n import N_, _, say

KINDS = {"redeem": N_("redeem"), "void": N_("void")}  # history's kind column


def register(sub) -> None:
    redeem = sub.add_parser("redeem", help="check a scanned payload; --confirm records it")
    redeem.add_argument("payload", help="what the QR code holds: a code or a URL")
    redeem.add_argument("--confirm", action="store_true", help="record the redemption if ready")
    redeem.add_argument("--staff", help="who confirmed (recorded with the event)")
    add_lang_option(redeem, "the output and the reward title")
    redeem.add_argument("--json", action="store_true")
    redeem.set_defaults(handler=cmd_redeem)

    void = sub.add_parser("void", help="undo a redemption made here within the undo window")
    void.add_argument("id", help="the redemption id")
    void.add_argument("--staff")
    add_lang_option(void)
    void.add_argument("--json", action="store_true")
    void.set_defaults(handler=cmd_void)

    history = sub.add_parser("history", help="list redemptions recorded on this device")
    history.add_argument("--today", action="store_true", help="only since local midnight")
    history.add_argument("--limit", type=int, default=None)
    add_lang_option(history)
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=cmd_history)


def cmd_redeem(args) -> int:
    cfg = load_config(args)
    ledger = context.open_ledger(cfg)
    lang = args.lang or cfg.language
    action = ledger.confirm if args.confirm else ledger.check
    result = action(args.payload, **({"staff": args.staff} if args.confirm else {}), lang=args.lang)
    if args.json:
        print_json(result.to_json())
    else:
        head = f"{result.verdict}: {reason(result.verdict, lang)}"
        if result.title:
            head += f" - {result.title}"
        print(head)
        detail = detail_line(result, lang)
        if detail:
            print(f"  {detail}")
    return EXIT_OK if result.verdict.ok else EXIT_FAIL


def cmd_void(args) -> int:
    ledger = context.open_ledger(load_config(args))
    try:
        event = ledger.void(args.id, staff=args.staff)
    except VoidError as exc:
        if args.json:
            print_json({"voided": False, "error": str(exc)})
        else:
            print("kiosk: " + _("cannot undo: {reason}").format(reason=say(exc)))
        return EXIT_FAIL
    if args.json:
        print_json({"voided": True, "event": event})
    else:
        print(_("undone: redemption {id} (void event {event})").format(id=args.id, event=event["id"]))
    return EXIT_OK


def cmd_history(args) -> int:
    ledger = context.open_ledger(load_config(args))
    since = None
    if args.today:
        midnight = datetime.combine(datetime.now().date(), time.min).astimezone()
        since = midnight.astimezone(UTC)
    rows = ledger.history(since=since, limit=args.limit)
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print(_("no redemptions today") if args.today else _("no redemptions"))
    for r in rows:
        local = timefmt.parse(r["at"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        flags = " " + _("VOIDED") if r["voided_by"] else ""
        flags += "" if r["origin"] == "local" else " " + _("(at {device})").format(device=r["device"])
        code = f"…{r['masked_code']}" if r["masked_code"] else r["code_hash"][:8]
        kind = _(KINDS[r["kind"]]) if r["kind"] in KINDS else r["kind"]
        print(f"{local}  {kind:<6} {r['reward_id'] or '-':<12} {code:<8} {r['id']}{flags}")
    return EXIT_OK
