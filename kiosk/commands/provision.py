"""``kiosk provision apply|qr``: install a provisioning file or a signed setup QR.

``apply`` is what ``kiosk-firstboot.service`` runs at boot (a kiosk.toml on the boot
partition) and what ``kiosk-setup-qr.service`` runs when the UI queued a scanned
setup QR (``--qr-file``). ``qr`` checks a setup QR text by hand.
"""

import subprocess
import sys
from pathlib import Path

from kiosk import config, provision
from kiosk.cli import EXIT_FAIL, EXIT_OK
from kiosk.commands import add_lang_option, print_json
from kiosk.errors import ProvisionError
from kiosk.i18n import Msg, _, say, speaking

SECRET_FIELDS = ("credential", "wifi_psk")  # never printed


def register(sub) -> None:
    p = sub.add_parser("provision", help="apply a kiosk.toml from the boot partition or a setup QR")
    psub = p.add_subparsers(dest="provision_command", metavar="ACTION", required=True)
    apply = psub.add_parser("apply", help="install provisioning into /etc/kiosk (as root)")
    apply.add_argument("--boot-file", type=Path,
                       help="provisioning kiosk.toml (default: /boot/firmware/kiosk.toml)")
    apply.add_argument("--qr-file", type=Path,
                       help="a queued setup QR text instead (deleted after the attempt)")
    apply.add_argument("--config-dir", type=Path, default=provision.CONFIG_DIR)
    apply.add_argument("--key-dir", type=Path, default=provision.KEY_DIR,
                       help="HQ keys trusted for setup QRs")
    apply.add_argument("--group", default=provision.SERVICE_GROUP,
                       help="group that may read the credentials ('' to keep the caller's)")
    apply.add_argument("--root", type=Path, default=Path("/"),
                       help="system root for the Wi-Fi files (NetworkManager, cmdline.txt)")
    apply.add_argument("--ca-wait", type=float, default=provision.CA_WAIT_S, metavar="S",
                       help="seconds to keep trying the broker for the pinned CA (setup QR)")
    apply.add_argument("--restart", action="store_true",
                       help="restart kiosk.service and kiosk-sync.service afterwards")
    add_lang_option(apply, "the messages (default: the provisioning file's [device] language)")
    apply.add_argument("--json", action="store_true")
    apply.set_defaults(handler=cmd_apply)
    qr = psub.add_parser("qr", help="verify a setup QR text and show what it holds")
    qr.add_argument("payload")
    qr.add_argument("--key-dir", type=Path, default=provision.KEY_DIR)
    add_lang_option(qr)
    qr.add_argument("--json", action="store_true")
    qr.set_defaults(handler=cmd_qr)


def cmd_apply(args) -> int:
    if args.lang is None and not args.qr_file:  # the technician's language is in the file they wrote
        boot_file = args.boot_file or provision.find_boot_file()
        if boot_file is not None:
            with speaking(config.language_hint(boot_file)):
                return _apply(args)
    return _apply(args)


def _apply(args) -> int:
    group = args.group or None
    try:
        if args.qr_file:
            result = _apply_qr_file(args.qr_file, args, group)
        else:
            result = provision.apply_boot_file(args.boot_file, config_dir=args.config_dir,
                                               group=group, root=args.root)
    except ProvisionError as exc:
        print("kiosk: " + _("provisioning refused [{reason}]: {problem}").format(
            reason=exc.reason, problem=say(exc)), file=sys.stderr)
        return EXIT_FAIL
    if args.restart:
        subprocess.run(["systemctl", "try-restart", "kiosk.service", "kiosk-sync.service"],
                       check=False)
    if args.json:
        print_json(result)
    else:
        print(_("provisioned {device} (store {store}, program {program}): {config}").format(
            device=result["device"], store=result["store"], program=result["program"],
            config=result["config"]))
        if result.get("wifi"):
            print(_("Wi-Fi {ssid} (country {country}): {connection}").format(
                ssid=repr(result["wifi"]["ssid"]), country=result["wifi"]["country"],
                connection=result["wifi"]["connection"]))
    return EXIT_OK


def _apply_qr_file(path: Path, args, group: str | None) -> dict:
    try:
        payload = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError("no_file", Msg("cannot read {file}: {error}", file=path, error=exc)) from None
    try:
        result = provision.apply_setup_qr(payload, config_dir=args.config_dir,
                                          key_dir=args.key_dir, group=group, root=args.root,
                                          ca_wait_s=args.ca_wait)
    except ProvisionError as exc:
        provision.record_result(path, exc)  # the waiting UI shows the reason
        raise
    finally:
        path.unlink(missing_ok=True)  # one attempt per scan; never a retrigger loop
    provision.record_result(path, None, result)
    return result


def cmd_qr(args) -> int:
    try:
        fields = provision.verify_setup_qr(args.payload, provision.load_trusted_keys(args.key_dir))
    except ProvisionError as exc:
        print("kiosk: " + _("setup QR refused [{reason}]: {problem}").format(
            reason=exc.reason, problem=say(exc)), file=sys.stderr)
        return EXIT_FAIL
    shown = {k: v for k, v in fields.items() if k not in SECRET_FIELDS}
    if args.json:
        print_json(shown)
    else:
        for key, value in shown.items():
            print(f"{key}: {value}")
    return EXIT_OK
