"""``kiosk sync-status [--json]``: is the sync agent connected, when did it last sync,
how many recorded events HQ has not acknowledged yet."""

from kiosk import context
from kiosk.cli import EXIT_OK, load_config
from kiosk.commands import print_json
from kiosk.core.syncstate import read_status


def register(sub) -> None:
    p = sub.add_parser("sync-status", help="connection state, last sync, events not yet at HQ")
    p.add_argument("--json", action="store_true")
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
        state = f"connected to {info['broker']}"
    elif info["agent_running"]:
        state = f"offline (agent running; {info['last_error'] or 'waiting for the broker'})"
    else:
        state = "offline (sync agent not running)"
    print(f"sync       {state}\nlast sync  {info['last_sync'] or 'never'}\n"
          f"pending    {info['pending']} event(s) not yet acknowledged by HQ")
    if info["list_state"]:
        print(f"code list  {info['list_state']}")
    if info["list_error"]:
        print(f"list error {info['list_error']}")
    return EXIT_OK
