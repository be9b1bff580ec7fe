"""Provisioning a kiosk: a kiosk.toml on the boot partition, or a signed setup QR.

Two ways a technician turns a freshly flashed device into a store's kiosk:

* **Boot partition file.** ``kiosk-hq enroll`` writes ``kiosk.toml``; the technician
  copies it onto the SD card's boot partition (FAT, readable from any laptop). On the
  next boot ``kiosk-firstboot.service`` runs ``kiosk provision apply``, which
  validates it, installs it as ``/etc/kiosk/kiosk.toml`` with its credential files
  (mode 0640, group ``kiosk``), and deletes the copies from the boot partition, so a
  card pulled from the device later does not hand out the broker password.
* **Setup QR.** ``kiosk-hq enroll --qr`` prints a QR holding
  ``KIOSK-SETUP:2:<base32 of body + Ed25519 signature>`` (see :func:`make_setup_qr`),
  signed with an HQ key the image already trusts, so a random QR shown to the camera
  cannot re-provision a device. It carries an expiry so an old photo of a setup card
  is useless, the device's broker password, its site settings and Wi-Fi, and the
  broker CA as a SHA-256 pin (:mod:`kiosk.broker_ca` fetches and confirms the CA).

Nothing here touches hardware; the file-system work takes its paths as arguments so
tests run it against a temporary root.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

import tomli_w

from kiosk import broker_ca, config, wifi
from kiosk.core import atomic, b64url, keys
from kiosk.errors import ConfigError, ProvisionError
from kiosk.i18n import Msg, _, say

if TYPE_CHECKING:  # cryptography loads on the first signature check (kiosk.core.keys)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SETUP_PREFIX = "KIOSK-SETUP:2:"
SETUP_FAMILY = "KIOSK-SETUP:"
REQUIRED_FIELDS = ("device", "store", "program", "broker", "credential")
SITE_FIELDS = ("name", "language", "camera", "printer", "rotation", "size")
WIFI_FIELDS = ("wifi_ssid", "wifi_psk", "wifi_country", "wifi_hidden")
OPTIONAL_FIELDS = ("username", "key_id", "issued_at", "expires_at", "ca_sha256",
                   *SITE_FIELDS, *WIFI_FIELDS)
# One letter per field on the wire: the QR must stay small enough for a phone screen
# held under a 640x480 camera (docs/technician.md). ``e`` is the validity in seconds.
QR_KEYS = {"device": "d", "store": "s", "program": "p", "broker": "b", "credential": "c",
           "username": "u", "key_id": "k", "issued_at": "i", "expires_at": "e",
           "ca_sha256": "a", "name": "n", "language": "l", "camera": "m", "printer": "r",
           "rotation": "o", "size": "z", "wifi_ssid": "w", "wifi_psk": "x",
           "wifi_country": "y", "wifi_hidden": "h"}
QR_FIELDS = {short: long for long, short in QR_KEYS.items()}
INT_FIELDS = ("issued_at", "expires_at", "rotation")
SIGNATURE_BYTES = 64
DEFAULT_QR_TTL_S = 24 * 3600
CLOCK_SKEW_S = 300  # a device whose clock is a few minutes off still accepts a fresh QR
# What an image has unless HQ says otherwise (kiosk-hq enroll uses the same defaults).
DEFAULT_CAMERA = "picamera2"
DEFAULT_PRINTER = "auto"
CAMERA_KINDS = ("picamera2", "opencv:", "replay:", "none")
PRINTER_SCHEMES = ("auto", "none", "usb://", "serial://", "tcp://", "file://", "preview://")

BOOT_FILE_CANDIDATES = (Path("/boot/firmware/kiosk.toml"), Path("/boot/kiosk.toml"))
CONFIG_DIR = Path("/etc/kiosk")
DATA_DIR = Path("/var/lib/kiosk")
SERVICE_GROUP = "kiosk"
CA_WAIT_S = 60.0


# --- site settings: the same in kiosk-hq enroll's kiosk.toml and in the setup QR -----

def parse_size(text: str) -> tuple[int, int]:
    width, sep, height = str(text).lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()
            and 240 <= int(width) <= 4096 and 240 <= int(height) <= 4096):
        raise ValueError(Msg("screen size {value} must be WIDTHxHEIGHT in pixels, e.g. 800x480", value=repr(text)))
    return int(width), int(height)


def check_site(settings: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first bad site setting (camera, printer, ui, language)."""
    camera, printer = settings.get("camera"), settings.get("printer")
    if camera and not str(camera).startswith(CAMERA_KINDS):
        raise ValueError(Msg("camera {value}: use picamera2, opencv:N, replay:PATH or none", value=repr(camera)))
    if printer and not str(printer).startswith(PRINTER_SCHEMES):
        raise ValueError(Msg("printer {value}: use auto, usb://VID:PID, serial:///dev/ttyUSB0, "
                             "tcp://HOST:9100, file:///dev/usb/lp0 or none", value=repr(printer)))
    if settings.get("rotation") not in (None, 0, 90, 180, 270):
        raise ValueError(Msg("rotation {value} must be 0, 90, 180 or 270", value=repr(settings["rotation"])))
    if settings.get("size"):
        parse_size(settings["size"])
    if settings.get("language") and settings["language"] not in config.LANGUAGES:
        raise ValueError(Msg("language {value} must be one of {choices}", value=repr(settings["language"]),
                             choices=", ".join(config.LANGUAGES)))


def site_config(settings: Mapping[str, Any]) -> dict:
    """The kiosk.toml tables for site settings (defaults: picamera2, printer auto)."""
    device = {k: settings[k] for k in ("name", "language") if settings.get(k)}
    ui = {}
    if settings.get("rotation") is not None:
        ui["rotation"] = int(settings["rotation"])
    if settings.get("size"):
        ui["width"], ui["height"] = parse_size(settings["size"])
    out = {"device": device,
           "camera": {"source": settings.get("camera") or DEFAULT_CAMERA},
           "printer": {"url": settings.get("printer") or DEFAULT_PRINTER}}
    if ui:
        out["ui"] = ui
    return out


def wifi_from(fields: Mapping[str, Any]) -> wifi.Wifi | None:
    """The Wi-Fi a setup QR or a ``[wifi]`` table asks for (checked), or None."""
    ssid = fields.get("wifi_ssid", fields.get("ssid"))
    if not ssid:
        return None
    hidden = fields.get("wifi_hidden", fields.get("hidden", False))
    net = wifi.Wifi(str(ssid), str(fields.get("wifi_psk", fields.get("psk", ""))),
                    str(fields.get("wifi_country", fields.get("country", ""))).upper(),
                    hidden in (True, 1, "1", "true"))
    return net.check()


# --- setup QR --------------------------------------------------------------------------

def _encode_body(body: Mapping[str, Any]) -> bytes:
    pairs = []
    for name, value in body.items():
        if value is None or value == "" or value is False:
            continue
        if name == "ca_sha256":
            value = b64url.encode(bytes.fromhex(value))
        elif value is True:
            value = "1"
        pairs.append((QR_KEYS[name], str(value)))
    return urlencode(pairs, safe=":/@", quote_via=quote).encode("ascii")


def _decode_body(body: bytes) -> dict:
    pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    result: dict[str, Any] = {}
    for short, value in pairs:
        name = QR_FIELDS.get(short)
        if name is None or name in result:
            raise ValueError(f"unknown or repeated field {short!r}")
        if name in INT_FIELDS:
            value = int(value)
        elif name == "ca_sha256":
            value = b64url.decode(value).hex()
        elif name == "wifi_hidden":
            value = value == "1"
        result[name] = value
    if isinstance(result.get("expires_at"), int) and isinstance(result.get("issued_at"), int):
        result["expires_at"] += result["issued_at"]  # on the wire: validity in seconds
    return result


def make_setup_qr(fields: Mapping[str, Any], private_key: Ed25519PrivateKey, *,
                  key_id: str | None = None, ttl_s: float = DEFAULT_QR_TTL_S,
                  now: float | None = None) -> str:
    """The text of a signed setup QR for ``fields`` (device, store, program, broker,
    credential; optional username, ca_sha256, site settings, Wi-Fi).

    ``KIOSK-SETUP:2:`` then base32 (no padding) of ``body + signature``: only upper-case
    letters, digits and ``:-``, so the QR uses its compact alphanumeric mode. ``body``
    is a URL query string with one-letter keys (:data:`QR_KEYS`); the Ed25519
    signature covers ``KIOSK-SETUP:2:`` followed by the body bytes.
    """
    missing = [f for f in REQUIRED_FIELDS if not fields.get(f)]
    if missing:
        raise ValueError(f"setup QR needs {', '.join(missing)}")
    unknown = set(fields) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        raise ValueError(f"setup QR does not carry {', '.join(sorted(unknown))}")
    check_site(fields)
    wifi_from(fields)
    issued = int(time.time() if now is None else now)
    body = {"issued_at": issued, **dict(fields), "expires_at": int(ttl_s)}
    if "expires_at" in fields:
        body["expires_at"] = int(fields["expires_at"]) - int(body["issued_at"])
    if key_id:
        body["key_id"] = key_id
    if body.get("username") == body["device"]:
        del body["username"]  # the default
    data = _encode_body(body)
    signature = private_key.sign(SETUP_PREFIX.encode("ascii") + data)
    return SETUP_PREFIX + base64.b32encode(data + signature).decode("ascii").rstrip("=")


def is_setup_qr(payload: str) -> bool:
    """True when a scanned text claims to be a setup QR (so the UI routes it here)."""
    return isinstance(payload, str) and payload.strip().upper().startswith(SETUP_FAMILY)


def verify_setup_qr(payload: str, trusted_keys: Mapping[str, Ed25519PublicKey], *,
                    now: float | None = None) -> dict:
    """The fields of a genuine, unexpired setup QR; :class:`ProvisionError` otherwise.

    ``ProvisionError.reason`` is one of ``not_setup_qr``, ``malformed``, ``unknown_key``,
    ``bad_signature``, ``expired``, ``not_yet_valid``, ``missing_field``, ``invalid``.
    """
    if not is_setup_qr(payload):
        raise ProvisionError("not_setup_qr", Msg("this QR is not a kiosk setup code"))
    text = payload.strip().upper()
    if not text.startswith(SETUP_PREFIX):
        raise ProvisionError("malformed", Msg("this setup QR is of an older format; ask HQ for a new one"))
    try:
        encoded = text[len(SETUP_PREFIX):]
        blob = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
        if len(blob) <= SIGNATURE_BYTES:
            raise ValueError("too short")
        data, signature = blob[:-SIGNATURE_BYTES], blob[-SIGNATURE_BYTES:]
        body = _decode_body(data)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProvisionError("malformed", Msg("setup QR is damaged or incomplete ({error})", error=exc)) from None
    _check_signature(SETUP_PREFIX.encode("ascii") + data, signature, body.get("key_id"),
                     trusted_keys)
    _check_fields(body)
    _check_time(body, time.time() if now is None else now)
    body.setdefault("username", body["device"])
    try:
        check_site(body)
    except ValueError as exc:
        raise ProvisionError("invalid", Msg("setup QR: {problem}", problem=exc)) from None
    wifi_from(body)
    return body


def _check_signature(message: bytes, signature: bytes, key_id: Any,
                     trusted: Mapping[str, Ed25519PublicKey]) -> None:
    if not trusted:
        raise ProvisionError("unknown_key", Msg("this device trusts no HQ key; cannot accept a setup QR"))
    if key_id is not None and key_id not in trusted:
        raise ProvisionError("unknown_key", Msg("setup QR was signed by key {key}, which this device does not "
                                                "trust ({trusted})", key=repr(key_id), trusted=", ".join(sorted(trusted))))
    candidates = [trusted[key_id]] if key_id is not None else list(trusted.values())
    if not any(keys.verify(k, signature, message) for k in candidates):
        raise ProvisionError("bad_signature", Msg("setup QR signature does not verify: forged or altered"))


def _check_fields(body: dict) -> None:
    missing = [f for f in REQUIRED_FIELDS if not isinstance(body.get(f), str) or not body[f]]
    if missing:
        raise ProvisionError("missing_field", Msg("setup QR lacks {fields}", fields=", ".join(missing)))
    for name in ("issued_at", "expires_at"):
        if not isinstance(body.get(name), int):
            raise ProvisionError("missing_field", Msg("setup QR lacks a numeric {field}", field=name))


def _check_time(body: dict, now: float) -> None:
    if now > body["expires_at"] + CLOCK_SKEW_S:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(body["expires_at"]))
        raise ProvisionError("expired", Msg("setup QR expired at {when}; ask HQ for a new one", when=when))
    if now < body["issued_at"] - CLOCK_SKEW_S:
        raise ProvisionError("not_yet_valid", Msg("setup QR is issued in the future: check the device clock"))


def load_trusted_keys(key_dir: Path) -> dict[str, Ed25519PublicKey]:
    """HQ public keys baked into the image: ``KEY_ID.pub.pem`` files in ``key_dir``."""
    result = {}
    for pem in sorted(Path(key_dir).glob("*.pub.pem")) if Path(key_dir).is_dir() else []:
        result[pem.name.removesuffix(".pub.pem")] = keys.read_public(pem)
    return result


# --- kiosk.toml from the boot partition ------------------------------------------------

ERROR_NOTE = "kiosk-provision-error.txt"
QR_SPOOL = DATA_DIR / "setup-qr.txt"
KEY_DIR = CONFIG_DIR / "keys"


def find_boot_file(candidates=BOOT_FILE_CANDIDATES) -> Path | None:
    """The first provisioning file present (``/boot/firmware/kiosk.toml`` on bookworm)."""
    return next((Path(p) for p in candidates if Path(p).is_file()), None)


def _referenced_files(data: Any, base: Path) -> list[PurePosixPath]:
    """Relative paths named anywhere in the TOML that exist beside it (key files, CA,
    password file). Paths leaving ``base`` are refused, not followed."""
    found: list[PurePosixPath] = []
    values = data.values() if isinstance(data, dict) else data if isinstance(data, list) else []
    for value in values:
        if isinstance(value, dict | list):
            found += _referenced_files(value, base)
        elif isinstance(value, str) and value and "://" not in value and "\n" not in value:
            rel = PurePosixPath(value)
            if rel.is_absolute() or not (base / rel).is_file():
                continue
            if ".." in rel.parts:
                raise ProvisionError("invalid", Msg("{path} points outside the provisioning folder", path=repr(value)))
            found.append(rel)
    return sorted(set(found))


def _private_dirs(folder: Path, top: Path, gid: int | None) -> None:
    """Create ``folder`` and its parents up to ``top`` as 0750 root:kiosk. mkdir's mode
    goes through the umask and new folders belong to root's group: a ``keys/`` folder
    made that way is unreadable to the kiosk user, whose services then cannot load
    the config (issue 12, defect 1)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    for d in [folder, *folder.parents]:
        if not d.is_relative_to(top):
            break
        os.chmod(d, 0o750)
        if gid is not None:
            os.chown(d, 0, gid)


def _write_private(path: Path, data: bytes, gid: int | None, top: Path | None = None) -> None:
    """Write ``path`` durably as mode 0640 (owner root, group kiosk when gid is given);
    folders below ``top`` that it needs are made 0750 root:kiosk."""
    _private_dirs(path.parent, top or path.parent, gid)
    tmp = path.with_name(f".{path.name}.provisioning")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o640)
    if gid is not None:
        os.chown(tmp, 0, gid)
    os.replace(tmp, path)


def _overwrite_and_unlink(path: Path) -> None:
    """Delete a provisioning file so that its bytes are gone from the FAT boot partition
    too: unlinking alone only marks the clusters free, and the broker password could
    be read back from the card. FAT rewrites a file in place, so zeros over the whole
    length (fsynced) replace the secret in the same clusters before the unlink. (The
    SD card's flash controller may still hold an old copy internally: a card from a
    kiosk is handed on only after a full-card erase.)"""
    with contextlib.suppress(OSError), open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.write(b"\0" * size)
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()


def _group_id(group: str | None) -> int | None:
    if group is None:
        return None
    import grp
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ProvisionError("system", Msg("group {group} does not exist on this system", group=repr(group))) from None


def _note_error(boot_dir: Path, message: str) -> None:
    """Leave the reason on the boot partition, where the technician will look."""
    with contextlib.suppress(OSError):
        (boot_dir / ERROR_NOTE).write_text(
            _("kiosk provisioning failed; the files were left untouched.") + f"\n{message}\n")


def apply_boot_file(boot_file: Path | None = None, *, config_dir: Path = CONFIG_DIR,
                    group: str | None = SERVICE_GROUP, root: Path = Path("/")) -> dict:
    """Install a provisioning kiosk.toml (and the files it references) into ``config_dir``.

    Validated in a staging folder first with the same loader the kiosk uses; only a
    valid set replaces the installed one (credential files first, ``kiosk.toml`` last,
    each by an atomic rename), and only then are the copies on the boot partition
    deleted. A refused file stays where it was, with ``kiosk-provision-error.txt``
    beside it saying why.

    A ``[wifi]`` table (ssid, psk, country, optional hidden) is not installed with
    the config: it becomes a NetworkManager connection and the Wi-Fi country under
    ``root`` (:mod:`kiosk.wifi`), so the Wi-Fi password lives only where
    NetworkManager keeps it (mode 0600, root).
    """
    boot_file = Path(boot_file) if boot_file else find_boot_file()
    if boot_file is None or not boot_file.is_file():
        raise ProvisionError("no_file", Msg("no kiosk.toml on the boot partition (looked for {paths})",
                                            paths=", ".join(map(str, BOOT_FILE_CANDIDATES))))
    base = boot_file.parent
    try:
        files, net = _stage_and_install(boot_file, Path(config_dir), _group_id(group))
    except ProvisionError as exc:
        _note_error(base, say(exc))
        raise
    joined = wifi.apply(net, Path(root)) if net else None
    removed = [boot_file] + [base / rel for rel in files]
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            _overwrite_and_unlink(path)
    for rel in files:  # empty folders we emptied (e.g. keys/)
        for parent in (base / rel).parents:
            if parent == base or not parent.is_relative_to(base):
                break
            with contextlib.suppress(OSError):
                parent.rmdir()
    with contextlib.suppress(FileNotFoundError):
        (base / ERROR_NOTE).unlink()
    cfg = config.load(Path(config_dir) / "kiosk.toml")
    return {"config": str(cfg.path), "device": cfg.device_id, "store": cfg.store,
            "program": cfg.program, "files": [str(f) for f in files],
            "removed_from_boot": [str(p) for p in removed], "wifi": joined}


def _staged(exc: ConfigError, stage: Path, folder: Path) -> Msg | str:
    """The loader's complaint about the staged copy, naming the boot partition's folder."""
    def moved(value):
        return str(value).replace(str(stage), str(folder))
    return exc.msg.map(moved) if exc.msg is not None else moved(exc)


def _stage_and_install(boot_file: Path, config_dir: Path,
                       gid: int | None) -> tuple[list[PurePosixPath], wifi.Wifi | None]:
    try:
        raw = boot_file.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError("invalid", Msg("{file}: not a readable TOML file ({error})", file=boot_file, error=exc)) from None
    net = None
    if "wifi" in data:
        table = data.pop("wifi")
        if not isinstance(table, dict) or not table.get("ssid"):
            raise ProvisionError("invalid", Msg("{file}: [wifi] needs ssid, psk and country", file=boot_file))
        net = wifi_from(table)
        raw = tomli_w.dumps(data).encode("utf-8")  # the Wi-Fi password stays out of /etc/kiosk
    files = _referenced_files(data, boot_file.parent)
    stage = config_dir.with_name(config_dir.name + ".staging")
    shutil.rmtree(stage, ignore_errors=True)
    try:
        for rel in files:
            _write_private(stage / rel, (boot_file.parent / rel).read_bytes(), gid, stage)
        _write_private(stage / "kiosk.toml", raw, gid, stage)
        try:
            config.load(stage / "kiosk.toml")
        except ConfigError as exc:
            raise ProvisionError("invalid", _staged(exc, stage, boot_file.parent)) from None
        _private_dirs(config_dir, config_dir, gid)
        for rel in [*files, PurePosixPath("kiosk.toml")]:  # kiosk.toml last
            _private_dirs((config_dir / rel).parent, config_dir, gid)
            os.replace(stage / rel, config_dir / rel)
        atomic.fsync_path(config_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return files, net



# --- setup QR: the UI asks, root applies ----------------------------------------------

def submit_setup_qr(payload: str, *, trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
                    spool: Path = QR_SPOOL, now: float | None = None) -> dict:
    """Called by the unprivileged UI: verify a scanned setup QR and queue it.

    The UI cannot write ``/etc/kiosk`` (its sandbox is read-only there), so it leaves
    the verified payload in ``spool``; ``kiosk-setup-qr.path`` sees it and runs
    ``kiosk provision apply --qr-file`` as root, which verifies it again.
    """
    keys_ = load_trusted_keys(KEY_DIR) if trusted_keys is None else trusted_keys
    fields = verify_setup_qr(payload, keys_, now=now)
    spool = Path(spool)
    atomic.write_text(spool, payload.strip() + "\n", mode=0o666)  # umask decides, as for open()
    return fields


RESULT_NAME = "setup-qr.result"
ROOT_WAIT_S = CA_WAIT_S + 30  # the root side may wait this long for Wi-Fi and the broker


def result_path(spool: Path = QR_SPOOL) -> Path:
    """Where the root side leaves its verdict on a queued setup QR, for the UI."""
    return Path(spool).with_name(RESULT_NAME)


def record_result(spool: Path, error: ProvisionError | None, result: dict | None = None) -> None:
    """Root side: the outcome of applying the queued QR, readable by the kiosk user."""
    msg = getattr(error, "msg", None)
    body = {"ok": error is None, "reason": getattr(error, "reason", ""),
            "message": str(error) if error else "", "device": (result or {}).get("device", ""),
            "msg": msg.to_json() if isinstance(msg, Msg) else None}  # the UI says it in its language
    with contextlib.suppress(OSError):
        atomic.write_text(result_path(spool), json.dumps(body) + "\n", mode=0o644)


def submit_and_wait(payload: str, *, trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
                    spool: Path = QR_SPOOL, wait_s: float = ROOT_WAIT_S,
                    poll_s: float = 0.5) -> dict:
    """The UI's call: :func:`submit_setup_qr`, then wait (off the UI thread) for the root
    side's verdict, so a refusal there (broker unreachable, CA not presented) reaches
    the screen as a :class:`ProvisionError`. On success the kiosk is restarted by root
    and this usually never returns; after ``wait_s`` without a verdict it returns the
    fields (still working)."""
    result_path(spool).unlink(missing_ok=True)
    fields = submit_setup_qr(payload, trusted_keys=trusted_keys, spool=spool)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            verdict = json.loads(result_path(spool).read_text())
        except (OSError, ValueError):
            time.sleep(poll_s)
            continue
        if not verdict.get("ok"):
            said = verdict.get("msg")
            raise ProvisionError(verdict.get("reason") or "refused",
                                 Msg.from_json(said) if said else verdict.get("message", ""))
        return fields
    return fields


def config_from_setup(fields: Mapping[str, Any], trusted_files: Mapping[str, str], *,
                      data_dir: Path = DATA_DIR) -> dict:
    """The kiosk.toml contents a verified setup QR stands for."""
    mqtt = {"broker": fields["broker"], "username": fields.get("username") or fields["device"],
            "password_file": "mqtt-password"}
    if fields.get("ca_sha256"):
        mqtt["ca"] = "mqtt-ca.pem"
    site = site_config(fields)
    return {
        "device": {"id": fields["device"], "store": fields["store"],
                   "program": fields["program"], "data_dir": str(data_dir), **site.pop("device")},
        "trust": {"keys": dict(trusted_files)},
        "mqtt": mqtt,
        **site,
    }


def apply_setup_qr(payload: str, *, config_dir: Path = CONFIG_DIR, key_dir: Path = KEY_DIR,
                   group: str | None = SERVICE_GROUP, data_dir: Path = DATA_DIR,
                   now: float | None = None, root: Path = Path("/"),
                   ca_wait_s: float = CA_WAIT_S) -> dict:
    """Root side of the setup QR: verify again, join the Wi-Fi it names, fetch and
    confirm the broker CA it pins, then write kiosk.toml + the MQTT password + the CA.

    When the CA cannot be confirmed (broker unreachable, CA not presented) nothing but
    the Wi-Fi is written: the technician shows the QR again once the network is up.
    """
    trusted = load_trusted_keys(key_dir)
    fields = verify_setup_qr(payload, trusted, now=now)
    net = wifi_from(fields)
    joined = wifi.apply(net, Path(root)) if net else None
    ca_pem = None
    if fields.get("ca_sha256"):
        from kiosk import connection  # paho: only on the root side

        target = connection.parse_url(fields["broker"])
        ca_pem = broker_ca.fetch(target.host, target.port, fields["ca_sha256"], wait_s=ca_wait_s)
    config_dir = Path(config_dir)
    rel_keys = {kid: os.path.relpath(Path(key_dir) / f"{kid}.pub.pem", config_dir)
                for kid in trusted}
    gid = _group_id(group)
    body = tomli_w.dumps(config_from_setup(fields, rel_keys, data_dir=data_dir)).encode()
    _write_private(config_dir / "mqtt-password", fields["credential"].encode() + b"\n", gid)
    if ca_pem:
        _write_private(config_dir / "mqtt-ca.pem", ca_pem, gid)
    _write_private(config_dir / "kiosk.toml", body, gid)
    atomic.fsync_path(config_dir)
    cfg = config.load(config_dir / "kiosk.toml")
    return {"config": str(cfg.path), "device": cfg.device_id, "store": cfg.store,
            "program": cfg.program, "broker": fields["broker"], "wifi": joined,
            "ca_sha256": fields.get("ca_sha256")}


# Shared with `kiosk restore` (kiosk/commands/backup.py): the same checks and modes.
referenced_files = _referenced_files
write_private = _write_private
group_id = _group_id
