"""``kiosk-hq enroll`` and ``kiosk-hq broker-user``: credentials for devices and HQ.

``enroll`` writes a folder for the technician (``kiosk.toml``, the MQTT password
file, the broker's CA and the trusted signing keys, all referenced by relative
paths so the folder can be copied to ``/etc/kiosk/`` as is) and adds the device's
password entry and ACL block to the broker's files. Reload the broker afterwards
(``systemctl reload mosquitto`` / SIGHUP re-reads both files).
"""

import shutil
import sys
from pathlib import Path

import tomli_w

from kiosk.core import atomic, ids
from sync import connection
from sync.hq import credentials


def register(sub) -> None:
    p = sub.add_parser("enroll", help="make a device's kiosk.toml and broker credentials")
    p.add_argument("--device", required=True, help="device id (also its broker user name)")
    p.add_argument("--store", required=True)
    p.add_argument("--program", required=True)
    p.add_argument("--broker", required=True, metavar="URL", help="mqtts://host:8883")
    p.add_argument("--ca", type=Path, help="broker CA certificate to copy to the device")
    p.add_argument("--trust", action="append", default=[], metavar="KEY_ID=PEM",
                   help="public signing key the device trusts (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="folder to write for the technician")
    p.add_argument("--passwd-file", type=Path, help="broker password file to update")
    p.add_argument("--acl-file", type=Path, help="broker ACL file to update")
    p.add_argument("--data-dir", default="/var/lib/kiosk", help="device data folder")
    p.add_argument("--language", default="en")
    p.add_argument("--business-name", default="")
    p.add_argument("--qr", action="store_true",
                   help="also write setup-qr.png/.txt: a signed setup QR for the device's "
                        "'not provisioned' screen (needs --sign-key and --key-id)")
    p.add_argument("--sign-key", type=Path, help="HQ private key that signs the setup QR")
    p.add_argument("--key-id", help="id of --sign-key, as the device trusts it")
    p.add_argument("--qr-hours", type=float, default=24.0, help="setup QR validity (hours)")
    p.set_defaults(handler=cmd_enroll)

    u = sub.add_parser("broker-user", help="add an HQ (or any) user to the broker password file")
    u.add_argument("user")
    u.add_argument("--passwd-file", type=Path, required=True)
    u.add_argument("--password-out", type=Path, required=True,
                   help="where to write the generated password (mode 0600)")
    u.add_argument("--acl-file", type=Path,
                   help="also give the user HQ's ACL block (read and write every programme)")
    u.set_defaults(handler=cmd_broker_user)


def _trust(specs: list[str], out: Path) -> dict[str, str]:
    table = {}
    for spec in specs:
        key_id, sep, pem = spec.partition("=")
        if not sep or not ids.is_name(key_id) or not Path(pem).is_file():
            raise ValueError(f"--trust {spec!r}: use KEY_ID=path/to/public.pem (an existing file)")
        (out / "keys").mkdir(exist_ok=True)
        shutil.copyfile(pem, out / "keys" / f"{key_id}.pem")
        table[key_id] = f"keys/{key_id}.pem"
    return table


def device_config(args, trust: dict[str, str]) -> dict:
    mqtt = {"broker": args.broker, "username": args.device, "password_file": "mqtt-password"}
    if args.ca:
        mqtt["ca"] = "mqtt-ca.pem"
    return {
        "device": {"id": args.device, "store": args.store, "program": args.program,
                   "data_dir": args.data_dir, "language": args.language,
                   "business_name": args.business_name},
        "trust": {"keys": trust},
        "mqtt": mqtt,
    }


def enroll(args) -> list[str]:
    if args.qr and not (args.sign_key and args.key_id):
        raise ValueError("--qr needs --sign-key PEM and --key-id ID (the key devices trust)")
    for name in ("device", "store", "program"):
        if not ids.is_name(getattr(args, name)):
            raise ValueError(f"--{name} {getattr(args, name)!r}: use {ids.NAME_RULE}")
    connection.parse_url(args.broker)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if (out / "kiosk.toml").exists():
        raise FileExistsError(f"{out / 'kiosk.toml'} exists; choose an empty folder")
    password = credentials.new_password()
    atomic.write_text(out / "mqtt-password", password + "\n")
    if args.ca:
        shutil.copyfile(args.ca, out / "mqtt-ca.pem")
    (out / "kiosk.toml").write_text(tomli_w.dumps(device_config(args, _trust(args.trust, out))))
    done = [f"wrote {out}/kiosk.toml and {out}/mqtt-password (copy the folder to /etc/kiosk/)"]
    block = credentials.device_acl(args.program, args.store, args.device)
    if args.passwd_file:
        credentials.upsert_password(args.passwd_file, args.device, password)
        done.append(f"set {args.device}'s password in {args.passwd_file}")
    else:
        line = f"{args.device}:{credentials.password_hash(password)}\n"
        (out / "mosquitto-passwd-line").write_text(line)
        done.append(f"add {out}/mosquitto-passwd-line to the broker's password file")
    if args.acl_file:
        credentials.upsert_acl(args.acl_file, args.device, block)
        done.append(f"set {args.device}'s ACL block in {args.acl_file}")
    else:
        (out / "mosquitto-acl-block").write_text(block)
        done.append(f"add {out}/mosquitto-acl-block to the broker's ACL file")
    if args.qr:
        done.append(write_setup_qr(args, password, out))
    done.append("then reload the broker (systemctl reload mosquitto)")
    return done


def write_setup_qr(args, password: str, out: Path) -> str:
    """A signed setup QR (kiosk.provision format) holding the device's identity, broker
    and broker password: the device checks the signature against its trusted HQ keys."""
    import qrcode

    from kiosk.core import keys
    from kiosk.provision import make_setup_qr

    fields = {"device": args.device, "store": args.store, "program": args.program,
              "broker": args.broker, "credential": password, "username": args.device}
    if args.ca:
        fields["ca"] = args.ca.read_text(encoding="ascii")
    text = make_setup_qr(fields, keys.load_private(args.sign_key), key_id=args.key_id,
                         ttl_s=args.qr_hours * 3600)
    atomic.write_text(out / "setup-qr.txt", text + "\n")
    image = qrcode.make(text, error_correction=qrcode.constants.ERROR_CORRECT_L, box_size=4)
    image.save(out / "setup-qr.png")
    return (f"wrote {out}/setup-qr.png (valid {args.qr_hours:g} h; it carries the broker "
            "password: hand it over like a key)")


def cmd_enroll(args) -> int:
    try:
        for line in enroll(args):
            print(line)
    except (ValueError, OSError) as exc:
        print(f"kiosk-hq: enroll: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_broker_user(args) -> int:
    try:
        password = credentials.new_password()
        atomic.write_text(args.password_out, password + "\n")
        credentials.upsert_password(args.passwd_file, credentials.check_user(args.user), password)
        if args.acl_file:
            credentials.upsert_acl(args.acl_file, args.user, credentials.hq_acl(args.user))
    except (ValueError, OSError) as exc:
        print(f"kiosk-hq: broker-user: {exc}", file=sys.stderr)
        return 1
    print(f"set {args.user}'s password in {args.passwd_file}; password in {args.password_out}")
    if args.acl_file:
        print(f"set {args.user}'s HQ block in {args.acl_file}")
    return 0
