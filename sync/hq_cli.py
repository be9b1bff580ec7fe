"""``kiosk-hq``: HQ reference tools (keys, signed bundles; MQTT tools in later commands)."""

import argparse
import base64
import json
import sys
from pathlib import Path

from kiosk.core import atomic, bundle_writer, keys
from kiosk.core.bundle import REWARD_TYPES
from kiosk.core.bundle_writer import Spec
from kiosk.errors import CsvError

DEFAULT_REWARDS = {
    "reward": {"type": "item", "value": 1, "title": {"en": "Reward"}},
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kiosk-hq", description="HQ tools for redeem-kiosk code lists")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    keygen = sub.add_parser("keygen", help="create an Ed25519 signing key pair")
    keygen.add_argument("--out", type=Path, required=True, help="folder for the two PEM files")
    keygen.set_defaults(handler=cmd_keygen)

    sign = sub.add_parser("sign", help="sign a codes CSV into a bundle")
    sign.add_argument("csv", type=Path, help="code,reward_id,valid_from,valid_until,max_uses,stores[,op]")
    sign.add_argument("--key", type=Path, required=True, help="signing-key.pem")
    sign.add_argument("--key-id", required=True)
    sign.add_argument("--program", required=True)
    sign.add_argument("--version", type=int, required=True)
    sign.add_argument("--base-version", type=int, help="make a delta on this version")
    sign.add_argument("--salt-file", type=Path,
                      help="the program's code_salt (default: PROGRAM.salt beside the key; "
                           "made on first use)")
    sign.add_argument("--rotate-salt", action="store_true",
                      help="full snapshot with a new code_salt; needs --uses-from")
    sign.add_argument("--uses-from", type=Path, metavar="HQ_DB",
                      help="with --rotate-salt: the collector's database; each code carries "
                           "the uses HQ stored for it, so devices keep refusing used codes")
    sign.add_argument("--rewards", type=Path, help="REWARDS.json: reward_id -> {type, value, title}")
    sign.add_argument("--expires-days", type=float, default=30.0)
    sign.add_argument("--clock-reset", action="store_true",
                      help="recovery list: devices set their clock floor back to this list's "
                           "issue time (docs/technician.md, 'Clock far ahead')")
    sign.add_argument("--out", type=Path, required=True)
    sign.add_argument("--tar", action="store_true", help="also write OUT.tar for a USB stick")
    sign.set_defaults(handler=cmd_sign)
    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands():
    """MQTT commands (publish, collect, report, enroll) register themselves when present."""
    try:
        from sync.hq import register_all
    except ImportError:
        return []
    return [register_all]


def cmd_keygen(args) -> int:
    try:
        priv, pub = keys.generate(args.out)
    except FileExistsError as exc:
        print(f"kiosk-hq: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {priv} (private, mode 0600) and {pub} (public: copy to devices)")
    return 0


def load_rewards(path: Path | None) -> dict:
    if path is None:
        return DEFAULT_REWARDS
    try:
        rewards = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read rewards JSON ({exc})") from None
    return load_rewards_dict(rewards, str(path))


def load_rewards_dict(rewards, where: str) -> dict:
    """A rewards table (reward_id -> {type, value, title}) checked; ``where`` names it."""
    if not isinstance(rewards, dict) or not rewards:
        raise ValueError(f"{where}: must be an object reward_id -> {{type, value, title}}")
    for rid, r in rewards.items():
        if not isinstance(r, dict) or r.get("type") not in REWARD_TYPES:
            raise ValueError(f"{where}: reward {rid!r}: type must be one of {', '.join(REWARD_TYPES)}")
        if not isinstance(r.get("title"), dict) or not r["title"]:
            raise ValueError(f"{where}: reward {rid!r}: title must be {{lang: text}}")
    return rewards


def read_salt(path: Path) -> bytes | None:
    """The program's code_salt, kept in a file so deltas and snapshots share it."""
    if not path.exists():
        return None
    salt = base64.b64decode(path.read_text().strip())
    if len(salt) < 16:
        raise ValueError(f"{path}: code_salt is too short")
    return salt


def save_salt(path: Path, salt: bytes) -> None:
    """Keep the program's code_salt for later signings (mode 0600, replaced atomically)."""
    atomic.write_text(path, base64.b64encode(salt).decode() + "\n")


def cmd_sign(args) -> int:
    try:
        rewards = load_rewards(args.rewards)
        salt_file = args.salt_file or args.key.parent / f"{args.program}.salt"
        if args.base_version is not None and (args.rotate_salt or not salt_file.exists()):
            raise ValueError(f"a delta keeps its base's code_salt: {salt_file} must exist "
                             "and --rotate-salt is for full snapshots only")
        if args.rotate_salt and args.uses_from is None:
            raise ValueError("--rotate-salt needs --uses-from HQ_DB (kiosk-hq collect's database) "
                             "so that the new list carries the uses HQ knows")
        key = keys.load_private(args.key)
        kept = None if args.rotate_salt else read_salt(salt_file)
        salt = kept or bundle_writer.new_salt()
        spec = Spec(program=args.program, version=args.version, key_id=args.key_id,
                    code_salt=salt, rewards=rewards, base_version=args.base_version,
                    expires_days=args.expires_days, clock_reset=args.clock_reset)
        records = bundle_writer.records_from_csv(args.csv, salt, rewards)
        old_salt = read_salt(salt_file) if args.rotate_salt else None
        if old_salt is not None:
            from sync.hq import uses

            records = uses.with_hq_uses(records, args.csv, uses.earlier_salts(salt_file) + [old_salt],
                                        args.program, args.uses_from)
        out = bundle_writer.write(spec, records, key, args.out, tar=args.tar)
        if old_salt is not None:
            uses.remember_salt(salt_file, old_salt)
        if kept is None:
            save_salt(salt_file, salt)
    except CsvError as exc:
        print(f"kiosk-hq: {args.csv}: {exc}; nothing was written", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as exc:
        print(f"kiosk-hq: {exc}", file=sys.stderr)
        return 1
    print(f"wrote bundle {out}" + (f" and {out}.tar" if args.tar else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
