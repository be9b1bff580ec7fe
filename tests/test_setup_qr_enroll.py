"""`kiosk-hq enroll --qr`: the setup QR a technician shows the "not provisioned" screen.

The QR image must decode to the signed text (also from a 640x480 camera frame at
counter distance, degraded), the device must accept it under the HQ key it trusts,
fetch the broker CA the QR pins from a real mosquitto, and come out with a config
that logs in to that broker, its site settings and its Wi-Fi.
"""

import grp
import json
import os
import shutil
import stat
import threading

import numpy as np
import pytest
import segno
import zxingcpp
from helpers import run_main
from PIL import Image

from kiosk import cli, config, connection, i18n, provision, wifi
from kiosk.errors import ConfigError, ProvisionError
from kiosk.hardware.camera import synthetic
from kiosk.hardware.decoder import make_decoder
from kiosk.ui import settings as ui_settings
from sync import hq_cli
from sync.hq.common import close, connect
from sync.testing import Broker, free_port, wait_until

GROUP = grp.getgrgid(os.getgid()).gr_name
CMDLINE = "console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 rootwait cfg80211.ieee80211_regdom=GB\n"


def chain_broker(folder) -> Broker:
    """mosquitto whose certfile holds server certificate + CA, as docs/technician.md says."""
    b = Broker(folder)
    server = b.pki["server"]
    server.write_bytes(server.read_bytes() + b.pki["ca"].read_bytes())
    return b


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with chain_broker(tmp_path_factory.mktemp("broker")) as b:
        yield b


def _enroll(hq, tmp_path, broker_url, ca, *extra, broker=None):
    out = tmp_path / "enroll"
    (tmp_path / "wifi-psk").write_text("shop-secret-2026\n")
    files = ["--passwd-file", broker.folder / "passwd", "--acl-file", broker.folder / "acl"] \
        if broker else []
    run = run_main(hq_cli.main, [
        "enroll", "--device", "counter-9", "--store", "north", "--program", "cafe",
        "--broker", broker_url, "--ca", ca, "--trust", f"{hq.key_id}={hq.pub}",
        "--name", "Counter 9", "--rotation", "90", "--size", "720x1280", "--language", "uz",
        "--wifi-ssid", "Shop Wi-Fi", "--wifi-psk-file", tmp_path / "wifi-psk",
        "--wifi-country", "uz", "--out", out, *files, *extra])
    if broker:
        broker.reload()
    return run, out


def _device_root(tmp_path):
    """A target root like a fresh image: cmdline.txt, a blocked WLAN, keys/ from the image."""
    root = tmp_path / "root"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/cmdline.txt").write_text(CMDLINE)
    (root / wifi.RFKILL_STATE).mkdir(parents=True)
    (root / wifi.RFKILL_STATE / "platform-fe300000.mmcnr:wlan").write_text("1\n")
    return root


def _apply(tmp_path, hq, text, *extra):
    key_dir = tmp_path / "etc-kiosk" / "keys"
    key_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(hq.pub, key_dir / f"{hq.key_id}.pub.pem")
    spool = tmp_path / "spool.txt"
    spool.write_text(text + "\n")
    run = run_main(cli.main, ["provision", "apply", "--qr-file", spool, "--config-dir",
                              tmp_path / "etc-kiosk", "--key-dir", key_dir, "--group", GROUP,
                              "--root", _device_root(tmp_path), *extra])
    assert not spool.exists()  # one attempt per scan
    return run


def _qr_args(hq):
    return ["--qr", "--sign-key", hq.key, "--key-id", hq.key_id]


def test_enroll_qr_is_small_signed_and_provisions_a_working_kiosk(hq, tmp_path, broker):
    url = f"mqtts://localhost:{broker.port}"
    run, out = _enroll(hq, tmp_path, url, broker.pki["ca"], *_qr_args(hq), broker=broker)
    assert run.rc == 0, run.err
    text = (out / "setup-qr.txt").read_text().strip()
    decoded = zxingcpp.read_barcodes(Image.open(out / "setup-qr.png").convert("L"))
    assert [r.text for r in decoded] == [text]
    qr = segno.make(text, error="m")
    assert len(text) < 520 and qr.version <= 14 and qr.mode == "alphanumeric"
    assert f"{len(text)} characters, QR version {qr.version}-M" in run.out

    run = _apply(tmp_path, hq, text, "--ca-wait", "10")
    assert run.rc == 0, run.err
    etc = tmp_path / "etc-kiosk"
    cfg = config.load(etc / "kiosk.toml")
    assert (cfg.device_id, cfg.store, cfg.name, cfg.language) == ("counter-9", "north", "Counter 9", "uz")
    assert cfg.section("camera").get("source") == "picamera2"
    assert cfg.section("printer").get("url") == "auto"
    ui = ui_settings.from_config(cfg)  # the UI's own reader
    assert (ui.rotation, ui.width, ui.height, ui.language) == (90, 720, 1280, "uz")
    assert not cfg.warnings
    # The CA was fetched from the broker and matches HQ's file byte for byte.
    assert (etc / "mqtt-ca.pem").read_bytes() == broker.pki["ca"].read_bytes()
    # ... and the config logs in to the real broker with the enrolled password.
    client = connect(connection.from_section(cfg.section("mqtt")), "counter-9-test", timeout=10)
    close(client)
    # Wi-Fi: a NetworkManager keyfile only root reads, the country as raspi-config sets it.
    root = tmp_path / "root"
    keyfile = root / wifi.CONNECTIONS / "kiosk-wifi.nmconnection"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    body = keyfile.read_text()
    assert "ssid=Shop Wi-Fi" in body and "psk=shop-secret-2026" in body and "key-mgmt=wpa-psk" in body
    cmdline = (root / "boot/firmware/cmdline.txt").read_text()
    assert cmdline.split() == CMDLINE.split()[:-1] + ["cfg80211.ieee80211_regdom=UZ"]
    assert (root / wifi.RFKILL_STATE / "platform-fe300000.mmcnr:wlan").read_text() == "0\n"
    assert "shop-secret" not in (etc / "kiosk.toml").read_text()


def test_a_broker_that_does_not_present_the_pinned_ca_is_refused(hq, tmp_path, broker):
    with Broker(tmp_path / "plain") as plain:  # certfile without the CA
        run, out = _enroll(hq, tmp_path, f"mqtts://localhost:{plain.port}", broker.pki["ca"],
                           *_qr_args(hq))
        assert run.rc == 0, run.err
        run = _apply(tmp_path, hq, (out / "setup-qr.txt").read_text().strip(), "--ca-wait", "5")
    assert run.rc == 1 and "[ca_not_presented]" in run.err and "certfile" in run.err
    assert not (tmp_path / "etc-kiosk" / "kiosk.toml").exists()
    assert not (tmp_path / "etc-kiosk" / "mqtt-password").exists()


def test_an_unreachable_broker_is_refused_quickly_and_wifi_is_kept(hq, tmp_path, broker):
    run, out = _enroll(hq, tmp_path, f"mqtts://127.0.0.1:{free_port()}", broker.pki["ca"],
                       *_qr_args(hq))
    assert run.rc == 0, run.err
    run = _apply(tmp_path, hq, (out / "setup-qr.txt").read_text().strip(), "--ca-wait", "0")
    assert run.rc == 1 and "[broker_unreachable]" in run.err and "show the QR again" in run.err
    assert not (tmp_path / "etc-kiosk" / "kiosk.toml").exists()
    assert (tmp_path / "root" / wifi.CONNECTIONS / "kiosk-wifi.nmconnection").exists()


def test_the_waiting_screen_gets_the_root_sides_refusal(hq, tmp_path, broker):
    """The UI queues the QR and waits; root (kiosk-setup-qr.service) refuses it; the
    reason reaches the UI as a ProvisionError instead of a silent nothing."""
    run, out = _enroll(hq, tmp_path, f"mqtts://127.0.0.1:{free_port()}", broker.pki["ca"],
                       *_qr_args(hq))
    assert run.rc == 0, run.err
    key_dir = tmp_path / "etc-kiosk" / "keys"
    key_dir.mkdir(parents=True)
    shutil.copyfile(hq.pub, key_dir / f"{hq.key_id}.pub.pem")
    spool = tmp_path / "var-lib-kiosk" / "setup-qr.txt"
    spool.parent.mkdir()
    root_side = {}

    def service():  # what kiosk-setup-qr.path starts once the spool file exists
        wait_until(spool.exists, 10, interval=0.02, what="queued QR")
        root_side["run"] = run_main(cli.main, [
            "provision", "apply", "--qr-file", spool, "--config-dir", tmp_path / "etc-kiosk",
            "--key-dir", key_dir, "--group", GROUP, "--root", _device_root(tmp_path),
            "--ca-wait", "0"])

    thread = threading.Thread(target=service)
    thread.start()
    with pytest.raises(ProvisionError) as exc:
        provision.submit_and_wait((out / "setup-qr.txt").read_text().strip(), spool=spool,
                                  trusted_keys=provision.load_trusted_keys(key_dir),
                                  wait_s=20, poll_s=0.05)
    thread.join(20)
    assert exc.value.reason == "broker_unreachable" and "show the QR again" in str(exc.value)
    assert root_side["run"].rc == 1 and not spool.exists()
    # root wrote the refusal as text + values: the UI says it in its own language
    russian = i18n.say(exc.value, "ru")
    assert "QR" in russian and "брокер" in russian and "127.0.0.1" in russian and "show the QR" not in russian
    assert i18n.say(exc.value, "en") == str(exc.value)


def test_a_refusal_crosses_to_the_ui_as_words_in_any_language(tmp_path):
    """record_result (root) -> submit_and_wait (UI): the Msg, nested values included,
    is rebuilt on the UI side, not flattened to English."""
    spool = tmp_path / "setup-qr.txt"
    inner = ConfigError(i18n.Msg("missing (required)"))
    refusal = ProvisionError("invalid", i18n.Msg("provisioning refused [{reason}]: {problem}",
                                                 reason="invalid", problem=inner))
    provision.record_result(spool, refusal)
    msg = i18n.Msg.from_json(json.loads(provision.result_path(spool).read_text())["msg"])
    assert msg == str(refusal) and msg.render("ru") == i18n.say(refusal, "ru") != str(refusal)


def test_enroll_qr_without_a_signing_key_is_refused_and_writes_nothing(hq, tmp_path, broker):
    run, out = _enroll(hq, tmp_path, "mqtts://hq.example:8883", broker.pki["ca"], "--qr")
    assert run.rc == 1 and "--sign-key" in run.err
    assert not out.exists()


def test_enroll_refuses_bad_site_settings_before_writing(hq, tmp_path, broker):
    run, out = _enroll(hq, tmp_path, "mqtts://hq.example:8883", broker.pki["ca"],
                       "--size", "huge")
    assert run.rc == 1 and "WIDTHxHEIGHT" in run.err and not out.exists()
    (tmp_path / "wifi-psk").write_text("short\n")
    run = run_main(hq_cli.main, [
        "enroll", "--device", "c1", "--store", "s", "--program", "p", "--broker",
        "mqtts://h:8883", "--wifi-ssid", "x", "--wifi-psk-file", tmp_path / "wifi-psk",
        "--wifi-country", "UZ", "--out", tmp_path / "c1"])
    assert run.rc == 1 and "8-63" in run.err and not (tmp_path / "c1").exists()


# --- read by the kiosk camera ------------------------------------------------------------
# Counter distance: the technician holds the phone 15-20 cm under the camera; the QR
# fills about 55-60 mm of the phone's screen. A Raspberry Pi camera (62-66 degrees
# across) sees about 180-240 mm at that distance, so the QR spans about 140-210 px
# of a 640x480 frame. The tests use 180 px (about 17 cm); bench/setup_qr.py prints
# the whole range.

def camera_frame(matrix: np.ndarray, qr_px: float, size=(640, 480)) -> np.ndarray:
    """A phone showing ``matrix`` under the camera, the code ``qr_px`` wide (without
    quiet zone), drawn 10 px per module and scaled down to the frame (box filter,
    like a sensor's pixels)."""
    modules = matrix.shape[0] - 8
    scale = qr_px / (modules * 10)
    big = synthetic.wallet_card("", size=(round(size[0] / scale), round(size[1] / scale)),
                                module_px=10, matrix=matrix)
    return np.asarray(Image.fromarray(big).resize(size, Image.Resampling.BOX))


@pytest.fixture(scope="module")
def setup_text():
    """A realistic setup QR: long names, Wi-Fi, CA pin, a 32-character password."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    fields = {"device": "counter-17", "store": "tashkent-mega-01", "program": "cafe",
              "broker": "mqtts://mqtt.example.com:8883", "credential": "x" * 32,
              "ca_sha256": "a1" * 32, "name": "Counter 17", "wifi_ssid": "Shop Wi-Fi 5G",
              "wifi_psk": "shop-secret-2026", "wifi_country": "UZ"}
    return provision.make_setup_qr(fields, Ed25519PrivateKey.generate(), key_id="hq1")


DEGRADE = {
    "clean": lambda g: g,
    "blur": lambda g: synthetic.blur(g, 1.0),
    "perspective": lambda g: synthetic.perspective(g, 0.2),
    "noise": lambda g: synthetic.noise(g, 12),
    "washed_out": lambda g: synthetic.low_contrast(g),
    "tilt_blur_noise": lambda g: synthetic.noise(synthetic.blur(synthetic.perspective(g, 0.15), 0.7), 8),
}


@pytest.mark.parametrize("case", sorted(DEGRADE))
def test_setup_qr_decodes_from_a_640x480_frame_at_counter_distance(setup_text, case):
    qr = segno.make(setup_text, error="m")
    matrix = np.array([[bool(v) for v in row] for row in qr.matrix_iter(border=4)])
    gray = DEGRADE[case](camera_frame(matrix, 180))
    found = make_decoder("auto").decode(gray)
    assert [f.text for f in found] == [setup_text]
    assert provision.is_setup_qr(found[0].text)


def test_setup_qr_png_from_enroll_decodes_when_scaled_down(hq, tmp_path, broker):
    """The PNG enroll writes, shown on a phone: scaled to 180 px (bilinear) in a frame."""
    run, out = _enroll(hq, tmp_path, "mqtts://mqtt.example.com:8883", broker.pki["ca"],
                       *_qr_args(hq))
    assert run.rc == 0, run.err
    png = Image.open(out / "setup-qr.png").convert("L")
    text = (out / "setup-qr.txt").read_text().strip()
    modules = segno.make(text, error="m").symbol_size(border=0)[0]
    side = round(png.width * 180 / (png.width * modules / (modules + 8)))
    frame = Image.new("L", (640, 480), 70)
    frame.paste(png.resize((side, side), Image.Resampling.BILINEAR), ((640 - side) // 2, 40))
    found = make_decoder("auto").decode(synthetic.blur(np.asarray(frame), 0.8))
    assert [f.text for f in found] == [text]
