"""``kiosk backup --to DIR`` and ``kiosk restore DIR``: move a kiosk to a new SD card.

See :mod:`kiosk.core.backup` for what the file holds and how it is encrypted. The
passphrase comes from ``--passphrase-file``, else ``$KIOSK_BACKUP_PASSPHRASE``, else
a prompt on the terminal.
"""

import contextlib
import getpass
import os
import shutil
import sqlite3
import sys
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from kiosk import config, provision
from kiosk.cli import EXIT_FAIL, EXIT_OK, load_config
from kiosk.commands import add_lang_option, print_json
from kiosk.core import backup, codelist
from kiosk.core.store import DB_NAME, Store
from kiosk.i18n import Msg, _, say

PASSPHRASE_ENV = "KIOSK_BACKUP_PASSPHRASE"


def register(sub) -> None:
    b = sub.add_parser("backup", help="write an encrypted backup of this device to a USB stick")
    b.add_argument("--to", type=Path, required=True, metavar="DIR",
                   help="folder to write to (the mounted USB stick)")
    b.add_argument("--passphrase-file", type=Path, help="file holding the backup passphrase")
    b.add_argument("--json", action="store_true")
    add_lang_option(b)
    b.set_defaults(handler=cmd_backup)
    r = sub.add_parser("restore", help="make this device the one in a backup (new SD card)")
    r.add_argument("source", type=Path, metavar="DIR",
                   help="a backup file, or a folder: its newest kiosk-backup-*.kbk")
    r.add_argument("--passphrase-file", type=Path, help="file holding the backup passphrase")
    r.add_argument("--group", default=provision.SERVICE_GROUP,
                   help="group that may read the credentials ('' to keep the caller's)")
    r.add_argument("--json", action="store_true")
    add_lang_option(r)
    r.set_defaults(handler=cmd_restore)


def _passphrase(args, confirm: bool) -> str:
    if args.passphrase_file:
        try:
            return args.passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise backup.BackupError("no_passphrase", Msg("cannot read {file}: {error}",
                                                                 file=args.passphrase_file, error=exc)) from None
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise backup.BackupError("no_passphrase", Msg("give the passphrase with --passphrase-file or "
                                                      "{variable}", variable="$" + PASSPHRASE_ENV))
    first = getpass.getpass(_("Backup passphrase: "))
    if confirm and getpass.getpass(_("Again: ")) != first:
        raise backup.BackupError("no_passphrase", Msg("the two passphrases differ"))
    return first


def _fail(exc: backup.BackupError) -> int:
    print(f"kiosk: {say(exc)} [{exc.reason}]", file=sys.stderr)
    return EXIT_FAIL


def cmd_backup(args) -> int:
    cfg = load_config(args)
    data = tomllib.loads(cfg.path.read_text(encoding="utf-8"))
    source = backup.Source(cfg.path, provision.referenced_files(data, cfg.path.parent),
                           cfg.data_dir / DB_NAME, cfg.device_id, cfg.store, cfg.program)
    try:
        info = backup.write(source, args.to, _passphrase(args, confirm=True))
    except backup.BackupError as exc:
        return _fail(exc)
    except OSError as exc:
        print("kiosk:", _("cannot write the backup to {folder}: {error}").format(folder=args.to, error=exc),
              file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print_json(info)
        return EXIT_OK
    size = f"{info['bytes'] / 1e6:.1f} MB" if info["bytes"] >= 1e5 else f"{info['bytes'] / 1e3:.0f} kB"
    print(_("wrote {file} ({size}), read back and checked").format(file=info["path"], size=size))
    print(_("device {device} (store {store}, program {program}): {events} redemption event(s), "
            "{pending} not yet sent to HQ, code list v{version}").format(
              device=info["device"], store=info["store"], program=info["program"],
              events=info["local_events"], pending=info["pending"], version=info["list_version"]))
    print(_("Encrypted with your passphrase. On the new card: {command}").format(
        command=f"sudo kiosk restore {Path(info['path']).parent}"))
    return EXIT_OK


def cmd_restore(args) -> int:
    config_path = config.locate(args.config)
    group = args.group or None
    try:
        path = backup.find(args.source)
        with tempfile.TemporaryDirectory(prefix="kiosk-restore-") as tmp:
            header = backup.unpack(path, _passphrase(args, confirm=False), Path(tmp))
            result = _install(Path(tmp), config_path, group)
    except backup.BackupError as exc:
        return _fail(exc)
    result.update(device=header["device"], store=header["store"], program=header["program"],
                  backup=str(path), created_at=header["created_at"])
    if args.json:
        print_json(result)
        return EXIT_OK
    print(_("restored device {device} (store {store}, program {program}) from {file} of {created}").format(
        device=result["device"], store=result["store"], program=result["program"], file=path.name,
        created=result["created_at"]))
    print(_("config in {folder}; database {database}: {events} redemption event(s), {pending} to send "
            "to HQ").format(folder=result["config_dir"], database=result["database"],
                            events=result["local_events"], pending=result["pending"]))
    if result.get("previous"):
        print(_("the database this card had is kept as {file}").format(file=result["previous"]))
    print(_("Start the kiosk: {start}; then check `{status}` until pending is 0.").format(
        start="sudo systemctl start kiosk kiosk-sync", status="kiosk sync-status"))
    return EXIT_OK


def _install_lists(staged: Path, lists: Path, owner: os.stat_result) -> None:
    """The code list files the restored database points at, in place before it is."""
    if not staged.is_dir():
        return
    lists.mkdir(parents=True, exist_ok=True)
    for src in staged.iterdir():
        target = lists / src.name
        shutil.copyfile(src, target)
        with open(target, "rb+") as fh:
            os.fsync(fh.fileno())
        if os.geteuid() == 0:
            os.chown(target, owner.st_uid, owner.st_gid)
        os.chmod(target, 0o640)


def _install(staged: Path, config_path: Path, group: str | None) -> dict:
    """Put the unpacked backup in place, unless this device has newer data."""
    config_dir = config_path.parent
    staged_toml = staged / "config" / "kiosk.toml"
    raw = tomllib.loads(staged_toml.read_text(encoding="utf-8"))
    data_value = Path(str(raw.get("device", {}).get("data_dir", provision.DATA_DIR))).expanduser()
    data_dir = data_value if data_value.is_absolute() else config_dir / data_value
    db = data_dir / DB_NAME
    why = backup.newer_here(db, staged / "data" / DB_NAME)
    if why:
        raise backup.BackupError("newer_here", Msg("refused: {why}. Nothing was changed.", why=why))
    gid = provision.group_id(group)
    files = sorted(p for p in (staged / "config").rglob("*") if p.is_file())
    for src in sorted(files, key=lambda p: p.name == "kiosk.toml"):  # kiosk.toml last
        rel = PurePosixPath(src.relative_to(staged / "config").as_posix())
        provision.write_private(config_dir / rel, src.read_bytes(), gid)
    previous = _set_aside(db)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(DB_NAME + ".restoring")
    shutil.copyfile(staged / "data" / DB_NAME, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    st = data_dir.stat()
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)  # the kiosk user owns its data folder
    os.chmod(tmp, 0o640)
    _install_lists(staged / backup.LISTS_MEMBER, codelist.list_dir(db), st)
    os.replace(tmp, db)
    store = Store(db)  # migrates a backup from an older version; WAL mode again
    try:
        summary = backup.db_summary(store.conn)
    finally:
        store.close()
    return {"config_dir": str(config_dir), "database": str(db), "previous": previous, **summary}


def _set_aside(db: Path) -> str | None:
    """Keep the card's own database (checkpointed, WAL files removed) beside the new one."""
    if not db.exists():
        return None
    with contextlib.closing(sqlite3.connect(str(db), timeout=30)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = db.with_name(f"{DB_NAME}.before-restore-{stamp}")
    os.replace(db, kept)
    for suffix in ("-wal", "-shm"):  # never let an old WAL meet the restored file
        with contextlib.suppress(FileNotFoundError):
            db.with_name(DB_NAME + suffix).unlink()
    return str(kept)
