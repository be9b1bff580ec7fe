"""``kiosk codes import|status``: the signed code list on this device."""

import sys
from datetime import UTC, datetime
from pathlib import Path

from kiosk import context
from kiosk.cli import EXIT_FAIL, EXIT_OK, load_config
from kiosk.commands import print_json
from kiosk.core import bundle, importer, timefmt
from kiosk.core.store import CurrentList
from kiosk.errors import BundleError


def register(sub) -> None:
    codes = sub.add_parser("codes", help="import a signed code list, show the current one")
    csub = codes.add_subparsers(dest="codes_command", metavar="ACTION", required=True)
    imp = csub.add_parser("import", help="verify and import a bundle directory or .tar")
    imp.add_argument("path", type=Path)
    imp.set_defaults(handler=cmd_import)
    status = csub.add_parser("status", help="show the installed code list")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)


class _Progress:
    """Import progress on stderr: a one-line bar on a terminal, else a line every 10%
    for lists of :data:`LINES_FROM` records or more (logs of a long unattended import),
    from 10% on: a list refused at its first chunk gets its one error line alone."""

    LINES_FROM = 100_000

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 100
        if self.tty and pct != self.last:
            self.last = pct
            bar = "#" * (pct // 4)
            after = " - sorting into the new list" if done == total else ""
            sys.stderr.write(f"\rimporting [{bar:<25}] {pct:3d}% {done:,}/{total:,} codes{after}")
            sys.stderr.flush()
        elif (not self.tty and total >= self.LINES_FROM and pct >= 10
              and pct // 10 != self.last // 10):
            self.last = pct
            after = "; sorting into the new list" if done == total else ""
            print(f"importing: {pct}% ({done:,}/{total:,} codes){after}", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty and self.last >= 0:
            sys.stderr.write("\n")


def cmd_import(args) -> int:
    cfg = load_config(args)
    ledger = context.open_ledger(cfg)
    progress = _Progress()
    source = None
    try:
        source = bundle.open_source(args.path)
        manifest = importer.import_bundle(
            ledger.store, source, cfg.trusted_keys, cfg.program,
            now=ledger.clock.read(), progress=progress)
    except BundleError as exc:
        progress.end()
        have = ledger.store.current_list()
        keep = f"version {have.version} stays in use" if have else "no list is installed"
        print(f"kiosk: rejected {args.path}: {exc} [{exc.reason}]; {keep}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        if source is not None:
            source.close()
    progress.end()
    kind = f"delta on {manifest.base_version}" if manifest.is_delta else "full list"
    print(f"imported {cfg.program} version {manifest.version} ({kind}, "
          f"{manifest.record_count:,} records, key {manifest.key_id})")
    return EXIT_OK


def status_dict(have: CurrentList | None, program: str,
                clock_floor: str | None = None) -> dict:
    """What ``codes status`` shows; ``clock_floor`` is the device's newest trusted time
    (a floor far ahead of the real time needs HQ's clock-reset list)."""
    if have is None:
        return {"program": program, "version": None, "codes": 0, "installed": False,
                "clock_floor": clock_floor}
    age = datetime.now(UTC) - have.issued_at
    return {"clock_floor": clock_floor,
        "program": have.program, "version": have.version, "base_version": have.base_version,
        "codes": have.code_count, "issued_at": timefmt.format(have.issued_at),
        "expires_at": timefmt.format(have.expires_at), "key_id": have.key_id,
        "imported_at": timefmt.format(have.imported_at), "installed": True,
        "age_hours": round(age.total_seconds() / 3600, 1),
        "expired": have.expires_at <= datetime.now(UTC),
    }


def cmd_status(args) -> int:
    cfg = load_config(args)
    store = context.open_store(cfg)
    info = status_dict(store.current_list(), cfg.program, store.get_meta("clock_floor"))
    info["salt_wait"] = importer.salt_wait(store)
    loading = importer.import_progress(store)
    info["loading"] = {"version": loading.version, "percent": loading.percent} if loading else None
    if args.json:
        print_json(info)
        return EXIT_OK
    if not info["installed"]:
        print(f"program {cfg.program}: no code list installed (run: kiosk codes import BUNDLE)")
        return EXIT_OK
    print(f"program   {info['program']}\nversion   {info['version']}"
          f"{' (delta on ' + str(info['base_version']) + ')' if info['base_version'] else ''}\n"
          f"codes     {info['codes']:,}\nissued    {info['issued_at']}\n"
          f"expires   {info['expires_at']}{'  EXPIRED' if info['expired'] else ''}\n"
          f"key id    {info['key_id']}\nimported  {info['imported_at']}\n"
          f"clock floor {info['clock_floor']}")
    if info["loading"]:
        print(f"loading   version {info['loading']['version']}: {info['loading']['percent']}%")
    if info["salt_wait"]:
        wait = info["salt_wait"]
        print(f"waiting   version {wait['version']} (new code salt) is not used yet: {wait['why']}; "
              f"version {info['version']} stays in use")
    return EXIT_OK
