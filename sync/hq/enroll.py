"""``kiosk-hq enroll`` and ``kiosk-hq broker-user``: credentials for devices and HQ.

``enroll`` writes a folder for the technician: the files for the SD card's boot
partition (``kiosk.toml`` with the site settings and Wi-Fi, ``mqtt-password``,
``mqtt-ca.pem``, ``keys/KEY_ID.pub.pem``, all referenced by relative paths;
``kiosk-firstboot.service`` installs them into ``/etc/kiosk/``), optionally the
setup QR, and adds the device's password entry and ACL block to the broker's files.
It prints exactly which files go where. Reload the broker afterwards
(``systemctl reload mosquitto`` / SIGHUP re-reads both files).
"""

import shutil
import sys
from pathlib import Path

import tomli_w

from kiosk import connection, provision
from kiosk.core import atomic, ids
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
    p.add_argument("--language", default="en", help="screen and receipt language (en uz kk ru)")
    p.add_argument("--business-name", default="")
    site = p.add_argument_group("site settings (in kiosk.toml and in the setup QR)")
    site.add_argument("--name", default="", help="device name shown to staff, e.g. 'Counter 7'")
    site.add_argument("--camera", default=provision.DEFAULT_CAMERA,
                      help="[camera] source (default: %(default)s; opencv:0 for a USB webcam)")
    site.add_argument("--printer", default=provision.DEFAULT_PRINTER,
                      help="[printer] url: auto (find a USB receipt printer; the default), "
                           "usb://VID:PID, serial:///dev/ttyUSB0, tcp://HOST:9100 or none")
    site.add_argument("--rotation", type=int, choices=(0, 90, 180, 270), help="[ui] rotation")
    site.add_argument("--size", metavar="WxH", help="[ui] screen size, e.g. 800x480")
    site.add_argument("--wifi-ssid", help="Wi-Fi network name (NetworkManager, WPA-PSK)")
    site.add_argument("--wifi-psk-file", type=Path,
                      help="file holding the Wi-Fi password (kept off the command line)")
    site.add_argument("--wifi-country", help="Wi-Fi country, ISO 3166 (UZ, KZ, RU ...): "
                                             "the WLAN stays off until it is set")
    site.add_argument("--wifi-hidden", action="store_true", help="the network hides its name")
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
        shutil.copyfile(pem, out / "keys" / f"{key_id}.pub.pem")
        table[key_id] = f"keys/{key_id}.pub.pem"  # the name the image's keys/ folder uses
    return table


def site_settings(args) -> dict:
    """The site settings the options name (checked), as the setup QR carries them."""
    settings = {"name": args.name, "language": args.language, "camera": args.camera,
                "printer": args.printer, "rotation": args.rotation, "size": args.size}
    provision.check_site(settings)
    return {k: v for k, v in settings.items() if v not in (None, "")}


def wifi_settings(args) -> dict:
    """Wi-Fi fields (setup-QR names), checked; empty without --wifi-ssid."""
    if not args.wifi_ssid:
        if args.wifi_psk_file or args.wifi_country:
            raise ValueError("--wifi-psk-file/--wifi-country need --wifi-ssid")
        return {}
    if not (args.wifi_psk_file and args.wifi_country):
        raise ValueError("--wifi-ssid needs --wifi-psk-file and --wifi-country")
    psk = args.wifi_psk_file.read_text(encoding="utf-8").rstrip("\r\n")
    fields = {"wifi_ssid": args.wifi_ssid, "wifi_psk": psk,
              "wifi_country": args.wifi_country.upper(), "wifi_hidden": args.wifi_hidden}
    provision.wifi_from(fields)  # ProvisionError (a ValueError) names the problem
    return fields


def device_config(args, trust: dict[str, str]) -> dict:
    mqtt = {"broker": args.broker, "username": args.device, "password_file": "mqtt-password"}
    if args.ca:
        mqtt["ca"] = "mqtt-ca.pem"
    site = provision.site_config(site_settings(args))
    data = {
        "device": {"id": args.device, "store": args.store, "program": args.program,
                   "data_dir": args.data_dir, "language": args.language,
                   "business_name": args.business_name, **site.pop("device")},
        "trust": {"keys": trust},
        "mqtt": mqtt,
        **site,
    }
    net = wifi_settings(args)
    if net:  # consumed by `kiosk provision apply`: becomes a NetworkManager connection
        data["wifi"] = {"ssid": net["wifi_ssid"], "psk": net["wifi_psk"],
                        "country": net["wifi_country"], "hidden": net["wifi_hidden"]}
    return data


BOOT_FILES = ("kiosk.toml", "mqtt-password", "mqtt-ca.pem", "keys")


def enroll(args) -> list[str]:
    if args.qr and not (args.sign_key and args.key_id):
        raise ValueError("--qr needs --sign-key PEM and --key-id ID (the key devices trust)")
    for name in ("device", "store", "program"):
        if not ids.is_name(getattr(args, name)):
            raise ValueError(f"--{name} {getattr(args, name)!r}: use {ids.NAME_RULE}")
    connection.parse_url(args.broker)
    site_settings(args)
    wifi_settings(args)
    out: Path = args.out
    if (out / "kiosk.toml").exists():
        raise FileExistsError(f"{out / 'kiosk.toml'} exists; choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    password = credentials.new_password()
    atomic.write_text(out / "mqtt-password", password + "\n")
    if args.ca:
        shutil.copyfile(args.ca, out / "mqtt-ca.pem")
    atomic.write_text(out / "kiosk.toml", tomli_w.dumps(device_config(args, _trust(args.trust, out))))
    done = copy_instructions(out)
    block = credentials.device_acl(args.program, args.store, args.device)
    done.append("HQ broker:")
    if args.passwd_file:
        credentials.upsert_password(args.passwd_file, args.device, password)
        done.append(f"  set {args.device}'s password in {args.passwd_file}")
    else:
        line = f"{args.device}:{credentials.password_hash(password)}\n"
        (out / "mosquitto-passwd-line").write_text(line)
        done.append(f"  add {out}/mosquitto-passwd-line to the broker's password file")
    if args.acl_file:
        credentials.upsert_acl(args.acl_file, args.device, block)
        done.append(f"  set {args.device}'s ACL block in {args.acl_file}")
    else:
        (out / "mosquitto-acl-block").write_text(block)
        done.append(f"  add {out}/mosquitto-acl-block to the broker's ACL file")
    done.append("  then reload the broker (systemctl reload mosquitto)")
    if args.qr:
        done += write_setup_qr(args, password, out)
    return done


def copy_instructions(out: Path) -> list[str]:
    """Exactly what goes onto the SD card, and what must not."""
    items = [name for name in BOOT_FILES if (out / name).exists()]
    shown = [f"{name}/ ({', '.join(sorted(p.name for p in (out / name).iterdir()))})"
             if (out / name).is_dir() else name for name in items]
    return [
        f"wrote {out}/ for device setup.",
        "Boot partition: copy these into the root of the SD card's boot partition",
        "  (the FAT partition named 'bootfs', next to config.txt):",
        *(f"  {out}/{item}" for item in shown),
        "  e.g. cp -r " + " ".join(f"{out}/{name}" for name in items) + " /media/$USER/bootfs/",
        "  On first boot the kiosk installs them into /etc/kiosk/ and deletes them from the card.",
        f"Do not copy anything else from {out}/ (broker lines, setup QR: they stay at HQ).",
    ]


def write_setup_qr(args, password: str, out: Path) -> list[str]:
    """A signed setup QR (kiosk.provision format) holding the device's identity, broker,
    broker password, the broker CA's SHA-256 pin, site settings and Wi-Fi."""
    import segno

    from kiosk import broker_ca

    fields = {"device": args.device, "store": args.store, "program": args.program,
              "broker": args.broker, "credential": password, "username": args.device,
              **site_settings(args), **wifi_settings(args)}
    if fields.get("language") == "en":
        del fields["language"]  # the default: keep the QR small
    for name, default in (("camera", provision.DEFAULT_CAMERA), ("printer", provision.DEFAULT_PRINTER)):
        if fields.get(name) == default:
            del fields[name]
    if args.ca:
        fields["ca_sha256"] = broker_ca.pin_of(args.ca.read_bytes())
    text = make_qr_text(args, fields)
    atomic.write_text(out / "setup-qr.txt", text + "\n")
    qr = segno.make(text, error="m", micro=False)  # M, or better when it fits the same size
    qr.save(out / "setup-qr.png", scale=8, border=4)
    return [f"Setup QR (alternative to the boot partition): {out}/setup-qr.png",
            f"  {len(text)} characters, QR version {qr.version}-{qr.error}, "
            f"{qr.symbol_size(border=0)[0]}x{qr.symbol_size(border=0)[0]} modules; "
            f"valid {args.qr_hours:g} h",
            "  Show it on a phone (full brightness) 15-25 cm under the kiosk camera.",
            "  It carries the broker and Wi-Fi passwords: hand it over like a key.",
            *([f"  The kiosk takes the broker's CA from the broker and checks it against the "
               f"QR's pin (sha256 {fields['ca_sha256'][:16]}...):",
               "  the broker's certfile must hold its certificate followed by the CA."]
              if args.ca else [])]


def make_qr_text(args, fields: dict) -> str:
    from kiosk.core import keys

    return provision.make_setup_qr(fields, keys.load_private(args.sign_key), key_id=args.key_id,
                                   ttl_s=args.qr_hours * 3600)


def cmd_enroll(args) -> int:
    try:
        for line in enroll(args):
            print(line)
    except (ValueError, OSError) as exc:  # ConfigError and ProvisionError are ValueErrors
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
