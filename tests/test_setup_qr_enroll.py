"""`kiosk-hq enroll --qr`: the setup QR a technician shows the "not provisioned" screen.

The QR image must decode to the signed text, the device must accept it under the HQ
key it trusts, and applying it must give a working config with broker password and CA.
"""

import grp
import os
import shutil

import zxingcpp
from helpers import run_main
from PIL import Image

from kiosk import cli, config, provision
from sync import hq_cli

GROUP = grp.getgrgid(os.getgid()).gr_name


def _enroll(hq, tmp_path, *extra):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
    out = tmp_path / "enroll"
    run = run_main(hq_cli.main, [
        "enroll", "--device", "counter-9", "--store", "north", "--program", "cafe",
        "--broker", "mqtts://hq.example:8883", "--ca", ca, "--trust", f"{hq.key_id}={hq.pub}",
        "--out", out, *extra])
    return run, out


def test_enroll_qr_is_signed_decodable_and_applies(hq, tmp_path):
    run, out = _enroll(hq, tmp_path, "--qr", "--sign-key", hq.key, "--key-id", hq.key_id)
    assert run.rc == 0, run.err
    text = (out / "setup-qr.txt").read_text().strip()
    decoded = zxingcpp.read_barcodes(Image.open(out / "setup-qr.png").convert("L"))
    assert [r.text for r in decoded] == [text]

    key_dir = tmp_path / "etc-kiosk" / "keys"
    key_dir.mkdir(parents=True)
    shutil.copyfile(hq.pub, key_dir / f"{hq.key_id}.pub.pem")
    fields = provision.verify_setup_qr(text, provision.load_trusted_keys(key_dir))
    password = (out / "mqtt-password").read_text().strip()
    assert (fields["device"], fields["store"], fields["credential"]) == ("counter-9", "north", password)

    spool = tmp_path / "spool.txt"
    spool.write_text(text + "\n")
    run = run_main(cli.main, ["provision", "apply", "--qr-file", spool, "--config-dir",
                              tmp_path / "etc-kiosk", "--key-dir", key_dir, "--group", GROUP])
    assert run.rc == 0, run.err
    cfg = config.load(tmp_path / "etc-kiosk" / "kiosk.toml")
    mqtt = cfg.section("mqtt")
    assert mqtt.path_value("ca").read_text() == (tmp_path / "ca.pem").read_text()
    assert mqtt.path_value("password_file").read_text().strip() == password


def test_enroll_qr_without_a_signing_key_is_refused_and_writes_nothing(hq, tmp_path):
    run, out = _enroll(hq, tmp_path, "--qr")
    assert run.rc == 1 and "--sign-key" in run.err
    assert not out.exists()
