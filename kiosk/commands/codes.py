"""``kiosk codes import|status``: the signed code list on this device."""

import sys
from datetime import UTC, datetime
from pathlib import Path

from kiosk import context
from kiosk.cli import EXIT_FAIL, EXIT_OK, load_config
from kiosk.commands import add_lang_option, print_json
from kiosk.core import bundle, importer, timefmt
from kiosk.core.store import CurrentList
from kiosk.errors import BundleError
from kiosk.i18n import _, say


def register(sub) -> None:
    codes = sub.add_parser("codes", help="import a signed code list, show the current one")
    csub = codes.add_subparsers(dest="codes_command", metavar="ACTION", required=True)
    imp = csub.add_parser("import", help="verify and import a bundle directory or .tar")
    imp.add_argument("path", type=Path)
    add_lang_option(imp, "the progress and the result")
    imp.set_defaults(handler=cmd_import)
    status = csub.add_parser("status", help="show the installed code list")
    status.add_argument("--json", action="store_true")
    add_lang_option(status)
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
            after = " - " + _("sorting into the new list") if done == total else ""
            sys.stderr.write("\r" + _("importing [{bar}] {pct:3d}% {done:,}/{total:,} codes").format(
                bar=f"{bar:<25}", pct=pct, done=done, total=total) + after)
            sys.stderr.flush()
        elif (not self.tty and total >= self.LINES_FROM and pct >= 10
              and pct // 10 != self.last // 10):
            self.last = pct
            after = "; " + _("sorting into the new list") if done == total else ""
            print(_("importing: {pct}% ({done:,}/{total:,} codes)").format(pct=pct, done=done, total=total)
                  + after, file=sys.stderr, flush=True)

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
        keep = _("version {version} stays in use").format(version=have.version) if have else \
            _("no list is installed")
        print("kiosk:", _("rejected {path}: {error} [{reason}]; {keep}").format(
            path=args.path, error=say(exc), reason=exc.reason, keep=keep), file=sys.stderr)
        return EXIT_FAIL
    finally:
        if source is not None:
            source.close()
    progress.end()
    kind = _("delta on {version}").format(version=manifest.base_version) if manifest.is_delta \
        else _("full list")
    print(_("imported {program} version {version} ({kind}, {records:,} records, key {key})").format(
        program=cfg.program, version=manifest.version, kind=kind, records=manifest.record_count,
        key=manifest.key_id))
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
        print(_("program {program}: no code list installed (run: {command})").format(
            program=cfg.program, command="kiosk codes import BUNDLE"))
        return EXIT_OK
    delta = " (" + _("delta on {version}").format(version=info["base_version"]) + ")" \
        if info["base_version"] else ""
    print(_("program   {program}\nversion   {version}{delta}\ncodes     {codes:,}\nissued    {issued}\n"
            "expires   {expires}{expired}\nkey id    {key}\nimported  {imported}\n"
            "clock floor {floor}").format(
              program=info["program"], version=info["version"], delta=delta, codes=info["codes"],
              issued=info["issued_at"], expires=info["expires_at"],
              expired="  " + _("EXPIRED") if info["expired"] else "", key=info["key_id"],
              imported=info["imported_at"], floor=info["clock_floor"]))
    if info["loading"]:
        print(_("loading   version {version}: {percent}%").format(**info["loading"]))
    if info["salt_wait"]:
        wait = info["salt_wait"]
        print(_("waiting   version {version} (new code salt) is not used yet: {why}; version {have} "
                "stays in use").format(version=wait["version"], why=say(wait["why"]), have=info["version"]))
    return EXIT_OK
