"""``kiosk sync-status [--json]``: is the sync agent connected, when did it last sync,
how many recorded events HQ has not acknowledged yet."""

from kiosk import context
from kiosk.cli import EXIT_OK, load_config
from kiosk.commands import add_lang_option, print_json
from kiosk.core.syncstate import read_status
from kiosk.i18n import _, say


def register(sub) -> None:
    p = sub.add_parser("sync-status", help="connection state, last sync, events not yet at HQ")
    p.add_argument("--json", action="store_true")
    add_lang_option(p)
    p.set_defaults(handler=cmd_sync_status)


def cmd_sync_status(args) -> int:
    cfg = load_config(args)
    store = context.open_store(cfg)
    try:
        info = read_status(store)
    finally:
        store.close()
    if args.json:
        print_json(info)
        return EXIT_OK
    if info["connected"]:
        state = _("connected to {broker}").format(broker=info["broker"])
    elif info["agent_running"]:
        state = _("offline (agent running; {error})").format(
            error=say(info["last_error"]) if info["last_error"] else _("waiting for the broker"))
    else:
        state = _("offline (sync agent not running)")
    print(_("sync       {state}\nlast sync  {last}\npending    {pending} event(s) not yet acknowledged by HQ")
          .format(state=state, last=info["last_sync"] or _("never"), pending=info["pending"]))
    if info["list_state"]:  # the agent's words, stored as a Msg (kiosk.core.syncstate)
        print(_("code list  {state}").format(state=say(info["list_state"])))
    if info["list_error"]:
        print(_("list error {error}").format(error=say(info["list_error"])))
    return EXIT_OK
