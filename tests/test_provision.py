"""Provisioning: a real ``kiosk-hq enroll`` folder applied from a fake boot partition,
and signed setup QRs (genuine, forged, tampered, expired)."""

import base64
import grp
import os
import stat
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import run_main

from kiosk import cli, config, context, provision, wifi
from kiosk.core import keys
from kiosk.errors import ProvisionError
from kiosk.i18n import say
from sync import hq_cli

GROUP = grp.getgrgid(os.getgid()).gr_name
FIELDS = {"device": "counter-7", "store": "main", "program": "cafe",
          "broker": "mqtts://hq.example:8883", "credential": "one-time-0123456789"}


@pytest.fixture
def boot(tmp_path, hq):
    """A boot partition holding what `kiosk-hq enroll` wrote (kiosk.toml + credentials)."""
    out = tmp_path / "boot"
    run = run_main(hq_cli.main, [
        "enroll", "--device", "counter-7", "--store", "main", "--program", "demo",
        "--broker", "mqtts://hq.example:8883", "--trust", f"hq1={hq.pub}",
        "--data-dir", str(tmp_path / "var-lib-kiosk"), "--out", out])
    assert run.rc == 0, run.err
    (out / "config.txt").write_text("dtparam=watchdog=on\n")  # firmware files stay
    return out


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_apply_installs_config_and_credentials_and_clears_the_boot_partition(boot, tmp_path):
    etc = tmp_path / "etc-kiosk"
    run = run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                              "--config-dir", etc, "--group", GROUP, "--json"])
    assert run.rc == 0, run.err
    result = run.json()
    assert (result["device"], result["store"]) == ("counter-7", "main")
    assert {"mqtt-password", "keys/hq1.pub.pem"} <= set(result["files"])
    for name in ("kiosk.toml", "mqtt-password", "keys/hq1.pub.pem"):
        assert mode(etc / name) == 0o640 and (etc / name).stat().st_gid == os.getgid()
    assert mode(etc) == 0o750
    # Credentials are gone from the (world-readable FAT) boot partition, firmware stays.
    assert not (boot / "kiosk.toml").exists() and not (boot / "mqtt-password").exists()
    assert not (boot / "keys").exists() and (boot / "config.txt").exists()
    cfg = config.load(etc / "kiosk.toml")
    assert set(cfg.trusted_keys) == {"hq1"}
    from kiosk.connection import from_section
    assert from_section(cfg.section("mqtt")).password  # password file resolved beside it
    ledger = context.open_ledger(cfg)  # the kiosk starts ready
    assert ledger.outbox_depth() == 0
    ledger.store.close()


def test_a_broken_file_is_refused_and_nothing_is_lost(boot, tmp_path):
    etc = tmp_path / "etc-kiosk"
    etc.mkdir()
    (etc / "kiosk.toml").write_text("# the previous, working config\n")
    (boot / "keys" / "hq1.pub.pem").write_text("not a key")
    run = run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                              "--config-dir", etc, "--group", GROUP])
    assert run.rc == 1 and "[invalid]" in run.err and "hq1" in run.err
    assert (etc / "kiosk.toml").read_text() == "# the previous, working config\n"
    assert (boot / "kiosk.toml").exists() and (boot / "mqtt-password").exists()
    note = (boot / provision.ERROR_NOTE).read_text()
    assert "hq1" in note and str(tmp_path / "etc-kiosk.staging") not in note


def test_refusals_speak_the_language_of_the_file_or_lang(boot, tmp_path):
    """The technician reads why in the language they wrote into the file (or --lang)."""
    text = (boot / "kiosk.toml").read_text()
    assert 'language = "en"' in text  # kiosk-hq enroll's default
    (boot / "kiosk.toml").write_text(text.replace('language = "en"', 'language = "uz"'))
    (boot / "keys" / "hq1.pub.pem").write_text("not a key")
    etc = tmp_path / "etc-kiosk"
    run = run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                              "--config-dir", etc, "--group", GROUP])
    assert run.rc == 1 and run.err.startswith("kiosk: sozlash rad etildi [invalid]: "), run.err
    assert "Ed25519 ochiq kaliti PEM emas" in run.err and "staging" not in run.err
    note = (boot / provision.ERROR_NOTE).read_text()
    assert note.startswith("kioskni sozlash amalga oshmadi") and "hq1" in note
    run = run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                              "--config-dir", etc, "--group", GROUP, "--lang", "ru"])
    assert run.rc == 1 and run.err.startswith("kiosk: настройка отклонена [invalid]: ")
    assert "не PEM открытого ключа Ed25519" in run.err
    run = run_main(cli.main, ["provision", "qr", "WIFI:S:shop;;", "--lang", "kk"])
    assert run.rc == 1
    assert run.err == "kiosk: баптау QR коды қабылданбады [not_setup_qr]: бұл QR киоскіні баптау коды емес\n"


def test_not_toml_and_escaping_paths_are_refused(tmp_path):
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "kiosk.toml").write_text("[device\n")
    with pytest.raises(ProvisionError) as exc:
        provision.apply_boot_file(boot / "kiosk.toml", config_dir=tmp_path / "etc", group=None)
    assert exc.value.reason == "invalid" and "TOML" in str(exc.value)
    (tmp_path / "secret").write_text("x")
    (boot / "kiosk.toml").write_text('[mqtt]\npassword_file = "../secret"\n')
    with pytest.raises(ProvisionError, match="outside"):
        provision.apply_boot_file(boot / "kiosk.toml", config_dir=tmp_path / "etc", group=None)
    assert not (tmp_path / "etc").exists()


def test_no_file_gives_a_clear_reason(tmp_path):
    with pytest.raises(ProvisionError) as exc:
        provision.apply_boot_file(tmp_path / "nothing.toml", config_dir=tmp_path / "etc")
    assert exc.value.reason == "no_file"


# --- setup QR ------------------------------------------------------------------------

@pytest.fixture
def hq_key():
    return Ed25519PrivateKey.generate()


def test_genuine_setup_qr_verifies(hq_key):
    text = provision.make_setup_qr(FIELDS, hq_key, key_id="hq1")
    assert provision.is_setup_qr(text) and len(text) < 600  # fits a scannable QR
    fields = provision.verify_setup_qr(text, {"hq1": hq_key.public_key()})
    assert {k: fields[k] for k in FIELDS} == FIELDS
    assert fields["expires_at"] - fields["issued_at"] == provision.DEFAULT_QR_TTL_S


@pytest.mark.parametrize("case, reason", [
    ("forged", "bad_signature"), ("tampered", "bad_signature"), ("expired", "expired"),
    ("future", "not_yet_valid"), ("unknown_key", "unknown_key"), ("wifi", "not_setup_qr"),
    ("truncated", "malformed"), ("no_trust", "unknown_key"), ("old_format", "malformed"),
])
def test_bad_setup_qrs_are_refused_with_a_reason(hq_key, case, reason):
    trusted = {"hq1": hq_key.public_key()}
    now = time.time()
    text = provision.make_setup_qr(FIELDS, hq_key, key_id="hq1", now=now)
    if case == "forged":
        text = provision.make_setup_qr(FIELDS, Ed25519PrivateKey.generate(), key_id="hq1")
    elif case == "tampered":
        encoded = text[len(provision.SETUP_PREFIX):]
        blob = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
        blob = blob.replace(b"s=main", b"s=mall")
        text = provision.SETUP_PREFIX + base64.b32encode(blob).decode().rstrip("=")
    elif case == "old_format":
        text = "KIOSK-SETUP:1:eyJkZXZpY2UiOiJ4In0.c2ln"
    elif case == "expired":
        text = provision.make_setup_qr(FIELDS, hq_key, key_id="hq1", now=now - 3 * 86400)
    elif case == "future":
        text = provision.make_setup_qr(FIELDS, hq_key, key_id="hq1", now=now + 86400)
    elif case == "unknown_key":
        text = provision.make_setup_qr(FIELDS, hq_key, key_id="hq9")
    elif case == "wifi":
        text = "WIFI:S:shop;T:WPA;P:secret;;"
    elif case == "truncated":
        text = text[:60]
    elif case == "no_trust":
        trusted = {}
    with pytest.raises(ProvisionError) as exc:
        provision.verify_setup_qr(text, trusted, now=now)
    assert exc.value.reason == reason
    assert str(exc.value)  # a sentence for the screen
    for lang in ("uz", "kk", "ru"):  # ... in every language
        assert say(exc.value, lang) != str(exc.value), (lang, str(exc.value))


def test_make_setup_qr_refuses_incomplete_fields(hq_key):
    with pytest.raises(ValueError, match="broker"):
        provision.make_setup_qr({**FIELDS, "broker": ""}, hq_key)


def test_scanned_qr_is_queued_by_the_ui_and_applied_by_root(hq_key, tmp_path):
    key_dir = tmp_path / "etc-kiosk" / "keys"
    key_dir.mkdir(parents=True)
    (key_dir / "hq1.pub.pem").write_bytes(keys.public_pem(hq_key.public_key()))
    spool = tmp_path / "var-lib-kiosk" / "setup-qr.txt"
    spool.parent.mkdir()
    text = provision.make_setup_qr(FIELDS, hq_key, key_id="hq1")
    trusted = provision.load_trusted_keys(key_dir)
    assert provision.submit_setup_qr(text, trusted_keys=trusted, spool=spool)["device"] == "counter-7"
    run = run_main(cli.main, ["provision", "apply", "--qr-file", spool,
                              "--config-dir", tmp_path / "etc-kiosk", "--key-dir", key_dir,
                              "--group", GROUP])
    assert run.rc == 0, run.err
    assert not spool.exists()  # one attempt per scan
    cfg = config.load(tmp_path / "etc-kiosk" / "kiosk.toml")
    assert (cfg.device_id, cfg.store, cfg.program) == ("counter-7", "main", "cafe")
    assert set(cfg.trusted_keys) == {"hq1"}
    password = tmp_path / "etc-kiosk" / "mqtt-password"
    assert password.read_text().strip() == FIELDS["credential"] and mode(password) == 0o640


def test_a_forged_queued_qr_is_refused_by_root_and_removed(hq_key, tmp_path):
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    (key_dir / "hq1.pub.pem").write_bytes(keys.public_pem(hq_key.public_key()))
    spool = tmp_path / "setup-qr.txt"
    spool.write_text(provision.make_setup_qr(FIELDS, Ed25519PrivateKey.generate(), key_id="hq1"))
    run = run_main(cli.main, ["provision", "apply", "--qr-file", spool,
                              "--config-dir", tmp_path / "etc", "--key-dir", key_dir])
    assert run.rc == 1 and "[bad_signature]" in run.err
    assert not spool.exists() and not (tmp_path / "etc" / "kiosk.toml").exists()


# --- site settings and Wi-Fi --------------------------------------------------------

def test_enroll_file_carries_site_settings_and_wifi_applied_under_a_root(tmp_path, hq):
    (tmp_path / "psk").write_text("pa;ss\\word 123\n")
    out = tmp_path / "boot"
    run = run_main(hq_cli.main, [
        "enroll", "--device", "counter-8", "--store", "main", "--program", "demo",
        "--broker", "mqtts://hq.example:8883", "--trust", f"hq1={hq.pub}",
        "--data-dir", str(tmp_path / "data"), "--name", "Counter 8", "--printer", "tcp://10.0.0.5:9100",
        "--wifi-ssid", " Shop", "--wifi-psk-file", tmp_path / "psk", "--wifi-country", "kz",
        "--out", out])
    assert run.rc == 0, run.err
    # The technician is told exactly what goes where, with the docs' key file names.
    assert "bootfs" in run.out and f"{out}/keys/ (hq1.pub.pem)" in run.out
    assert f"cp -r {out}/kiosk.toml {out}/mqtt-password {out}/keys /media/$USER/bootfs/" in run.out
    assert "/etc/kiosk/" in run.out and "mosquitto-passwd-line" in run.out
    root = tmp_path / "root"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/cmdline.txt").write_text("console=tty1 rootwait\n")
    etc = tmp_path / "etc-kiosk"
    run = run_main(cli.main, ["provision", "apply", "--boot-file", out / "kiosk.toml",
                              "--config-dir", etc, "--group", GROUP, "--root", root])
    assert run.rc == 0, run.err
    assert "Wi-Fi ' Shop' (country KZ)" in run.out
    cfg = config.load(etc / "kiosk.toml")
    assert not cfg.warnings and cfg.name == "Counter 8"
    assert cfg.section("camera").get("source") == "picamera2"  # an image has a CSI camera
    assert cfg.section("printer").get("url") == "tcp://10.0.0.5:9100"
    installed = (etc / "kiosk.toml").read_text()
    assert "[wifi]" not in installed and "pa;ss" not in installed
    assert not (out / "kiosk.toml").exists()  # the Wi-Fi password left the FAT partition too
    keyfile = root / wifi.CONNECTIONS / "kiosk-wifi.nmconnection"
    assert mode(keyfile) == 0o600
    text = keyfile.read_text()
    # GKeyFile escapes: a leading space and a backslash survive NetworkManager's reader.
    assert "ssid=\\sShop\n" in text and "psk=pa;ss\\\\word 123\n" in text
    assert "cfg80211.ieee80211_regdom=KZ" in (root / "boot/firmware/cmdline.txt").read_text()


def test_a_bad_wifi_table_refuses_the_whole_file(boot, tmp_path):
    with (boot / "kiosk.toml").open("a") as fh:
        fh.write('\n[wifi]\nssid = "Shop"\npsk = "secret-pass"\ncountry = "XX"\n')
    run = run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                              "--config-dir", tmp_path / "etc", "--group", GROUP,
                              "--root", tmp_path / "root"])
    assert run.rc == 1 and "[invalid]" in run.err and "country" in run.err
    assert (boot / "kiosk.toml").exists() and not (tmp_path / "etc").exists()
    assert not (tmp_path / "root").exists()


def test_setup_qr_carries_settings_and_wifi(hq_key):
    fields = {**FIELDS, "name": "Counter 7", "rotation": 180, "size": "1024x600",
              "language": "kk", "camera": "opencv:0", "printer": "usb://04b8:0e15",
              "wifi_ssid": "Shop", "wifi_psk": "secret-pass", "wifi_country": "KZ",
              "wifi_hidden": True}
    text = provision.make_setup_qr(fields, hq_key, key_id="hq1")
    got = provision.verify_setup_qr(text, {"hq1": hq_key.public_key()})
    assert {k: got[k] for k in fields} == fields
    toml = provision.config_from_setup(got, {"hq1": "keys/hq1.pub.pem"})
    assert toml["ui"] == {"rotation": 180, "width": 1024, "height": 600}
    assert toml["camera"] == {"source": "opencv:0"} and toml["device"]["name"] == "Counter 7"
    with pytest.raises(ValueError, match="rotation"):
        provision.make_setup_qr({**FIELDS, "rotation": 45}, hq_key)


def test_checking_a_qr_by_hand_never_prints_the_passwords(hq_key, tmp_path):
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    (key_dir / "hq1.pub.pem").write_bytes(keys.public_pem(hq_key.public_key()))
    text = provision.make_setup_qr({**FIELDS, "wifi_ssid": "Shop", "wifi_psk": "wifi-secret-99",
                                    "wifi_country": "UZ"}, hq_key, key_id="hq1")
    run = run_main(cli.main, ["provision", "qr", text, "--key-dir", key_dir])
    assert run.rc == 0 and "wifi_ssid: Shop" in run.out and "device: counter-7" in run.out
    assert FIELDS["credential"] not in run.out and "wifi-secret-99" not in run.out
