"""``kiosk print-test`` and the [printer]/[receipt] configuration."""

import pytest
import zxingcpp
from escpos.capabilities import get_profile
from helpers import make_device
from PIL import Image

from kiosk import printing
from kiosk.errors import ConfigError
from kiosk.hardware.printer import escpos_stream
from kiosk.hardware.printer.fake_server import PAPER_OUT, FakeNetworkPrinter


def qr_in_png(path) -> list[str]:
    with Image.open(path) as img:
        return [r.text for r in zxingcpp.read_barcodes(img)]


def test_print_test_to_a_preview_folder_in_every_language(device, tmp_path):
    out = tmp_path / "receipts"
    run = device.run("print-test", "--printer", f"preview://{out}", "--lang", "all")
    assert run.rc == 0, run.err
    pngs = sorted(out.glob("receipt-*.png"))
    assert len(pngs) == 4 and run.out.count("printed ->") == 4
    for png in pngs:
        [text] = qr_in_png(png)
        assert text in png.name


def test_print_test_uses_the_configured_network_printer(hq, tmp_path):
    with FakeNetworkPrinter() as fake:
        dev = make_device(tmp_path / "dev", hq, extra=(
            f'[printer]\nurl = "{fake.url}"\npaper_mm = 58\nprofile = "POS-5890"\n'
            '[receipt]\nfooter = { en = "See you soon", ru = "До встречи" }\n'))
        run = dev.run("print-test", "--lang", "ru", "--json")
        assert run.rc == 0, run.err
        [job] = fake.wait_for_jobs(1)
    assert run.json()["results"][0]["printed"] is True
    stream = escpos_stream.parse(job)
    assert {r.width for r in stream.rasters} == {384}  # 58 mm paper
    slots = {int(slot): name.lower() for name, slot in get_profile("POS-5890").get_code_pages().items()
             if name in ("CP437", "CP866", "CP855", "CP1251", "CP932")}
    text = "".join(t.decode(slots) for t in stream.texts)
    assert "До встречи" in text and "*** ТЕСТОВАЯ\nПЕЧАТЬ ***" in text  # 16 columns at double width


def test_print_test_reports_a_fault_and_fails(hq, tmp_path):
    with FakeNetworkPrinter(PAPER_OUT) as fake:
        run = make_device(tmp_path / "d", hq).run("print-test", "--printer", fake.url)
    assert run.rc == 1 and "FAILED [paper_out]" in run.out and "out of paper" in run.out


def test_print_test_without_a_config_needs_only_a_printer(tmp_path, monkeypatch):
    from helpers import run_main

    from kiosk import cli

    monkeypatch.setenv("KIOSK_CONFIG", str(tmp_path / "missing.toml"))
    run = run_main(cli.main, ["print-test", "--printer", f"preview://{tmp_path}/p", "--lang", "kk"])
    assert run.rc == 0, run.err
    run = run_main(cli.main, ["print-test"])
    assert run.rc == 2 and "config file not found" in run.err


def test_no_printer_configured_is_explained(device):
    run = device.run("print-test")
    assert run.rc == 1 and "no printer configured" in run.err


@pytest.mark.parametrize("toml,words", [
    ('[printer]\nurl = "lpt://1"\n', "url: unknown printer URL"),
    ('[printer]\nurl = "dummy://"\npaper_mm = 70\n', "paper_mm: 70 is not one of 80, 58"),
    ('[printer]\nurl = "dummy://"\nprofile = "XYZ"\n', "profile: unknown python-escpos profile"),
    ('[receipt]\nlogo = "nope.png"\n', "logo:"),
    ('[receipt]\ntimezone = "Mars/Olympus"\n', "timezone:"),
])
def test_bad_printer_config_names_the_key(hq, tmp_path, toml, words):
    dev = make_device(tmp_path / "bad", hq, extra=toml)
    with pytest.raises(ConfigError, match=words):
        printing.from_config(dev.config(), dev.ledger().store)
    assert dev.run("print-test").rc == 2


def test_from_config_builds_the_service(hq, tmp_path):
    logo = tmp_path / "logo.png"
    Image.new("L", (100, 40), 0).save(logo)
    dev = make_device(tmp_path / "ok", hq, extra=(
        f'[printer]\nurl = "preview://receipts"\n[receipt]\nlogo = "{logo}"\n'
        'timezone = "Asia/Tashkent"\nfooter = "Rahmat"\n'))
    svc = printing.from_config(dev.config(), dev.ledger().store)
    assert svc.printer.directory == tmp_path / "ok" / "receipts"  # relative to the config file
    assert svc.settings["timezone"] == "Asia/Tashkent" and svc.settings["footer"] == "Rahmat"
    assert svc.status(probe=False)["pending"] == 0
    svc.close()


def test_udev_rule_gives_the_lp_group_the_printer_devices():
    import re
    from pathlib import Path

    rules = Path(__file__).parents[1] / "systemd" / "udev" / "60-kiosk-printer.rules"
    lines = [ln for ln in rules.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 3
    pair = re.compile(r'^[A-Za-z_]+(\{[A-Za-z_]+\})?(==|=|\+=)"[^"]*"$')
    for line in lines:
        assert all(pair.match(p.strip()) for p in line.split(", ")), line
        assert 'GROUP="lp"' in line and 'MODE="0660"' in line
    assert any("0701??" in ln for ln in lines) and any('KERNEL=="lp[0-9]*"' in ln for ln in lines)


def test_reprint_and_print_queue_commands(hq, tmp_path):
    with FakeNetworkPrinter(PAPER_OUT) as fake:
        dev = make_device(tmp_path / "q", hq, extra=f'[printer]\nurl = "{fake.url}"\n')
        assert dev.import_(hq.bundle(["COFFEE-0001"])).rc == 0
        rid = dev.verdict("COFFEE-0001", "--confirm")["redemption_id"]
        run = dev.run("reprint", rid, "--json")
        assert run.rc == 1 and run.json()["state"] == "queued" and run.json()["fault"] == "paper_out"
        run = dev.run("print-queue")
        assert run.rc == 1 and rid in run.out and "[paper_out]" in run.out and "REPRINT" in run.out
    out = tmp_path / "paper"
    text = dev.path.read_text().replace(fake.url, f"preview://{out}")
    dev.path.write_text(text)
    run = dev.run("print-queue", "--retry", "--json")
    assert run.rc == 0 and run.json() == {"printed": 1, "pending": []}
    assert qr_in_png(out / f"receipt-{rid}-reprint.png") == [rid]
    assert dev.run("print-queue").out.strip() == "print queue is empty"
    run = dev.run("reprint", "no-such-id")
    assert run.rc == 1 and "no redemption no-such-id" in run.err


def test_python_escpos_loads_on_the_first_receipt_prepared(tmp_path):
    """Opening a printer (as the UI does at start) loads none of python-escpos, pyusb,
    pyserial, python-barcode or qrcode (the UI's memory: bench/ui.py); the first
    receipt loads them, prepared (the shared printer-database cache, logging left
    alone), and renders the whole job."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ESCPOS_CAPABILITIES_PICKLE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    code = ("import logging, os, sys\n"
            "from kiosk import printing\n"
            "from kiosk.core import receipt\n"
            "from kiosk.hardware.printer import open_printer\n"
            "heavy = lambda: sorted({m.split('.')[0] for m in sys.modules} & "
            "{'escpos', 'usb', 'serial', 'barcode', 'qrcode'})\n"
            "p = open_printer('tcp://127.0.0.1:9')\n"
            "print(heavy())\n"
            "job = p.render(receipt.build(printing.sample_data({}), 'kk'))\n"
            "print(heavy(), job[:2].hex(), len(job) > 1000)\n"
            "print(os.environ.get('ESCPOS_CAPABILITIES_PICKLE_DIR'), logging.getLogger().handlers)\n")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0] == "[]", lines
    assert lines[1].startswith("['barcode', 'escpos', 'qrcode'") and lines[1].endswith(" 1b40 True"), lines
    assert lines[2].startswith(str(tmp_path / "cache" / "redeem-kiosk" / "escpos-")), lines
    assert lines[2].endswith(" []")  # python-escpos' basicConfig() took no hold


def test_importing_the_printer_changes_nothing_and_the_cli_prepares_escpos(tmp_path):
    """Importing kiosk.hardware.printer does not prepare python-escpos (no environment
    change of ours); the ``kiosk`` entry point prepares it for a printing command (one
    shared, versioned printer-database cache, logging left alone) and not for others."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ESCPOS_CAPABILITIES_PICKLE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")

    def python(code: str) -> list[str]:
        run = subprocess.run([sys.executable, "-c", code, f"preview://{tmp_path}/p"], env=env,
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        return [line for line in run.stdout.splitlines() if not line.startswith("preview")]

    assert python("import os, kiosk.hardware.printer\n"
                  "print(os.environ.get('ESCPOS_CAPABILITIES_PICKLE_DIR'))") == ["None"]
    lines = python(
        "import logging, os, sys\n"
        "from kiosk import cli\n"
        "cli.main(['--config', 'none.toml', 'codes', 'status'])\n"
        "print(os.environ.get('ESCPOS_CAPABILITIES_PICKLE_DIR'), 'escpos' in sys.modules)\n"
        "cli.main(['print-test', '--printer', sys.argv[1], '--lang', 'en'])\n"
        "print(os.environ.get('ESCPOS_CAPABILITIES_PICKLE_DIR'), logging.getLogger().handlers)\n")
    assert lines[0] == "None False", lines
    assert lines[1].startswith(str(tmp_path / "cache" / "redeem-kiosk" / "escpos-")), lines
    assert lines[1].endswith(" []")  # python-escpos' basicConfig() took no hold
    assert list((tmp_path / "p").glob("*.png"))


def test_print_commands_speak_the_chosen_or_configured_language(hq, tmp_path):
    """print-test, reprint and print-queue in Russian (--lang) and Kazakh (configured);
    --json stays as it is."""
    with FakeNetworkPrinter(PAPER_OUT) as fake:
        dev = make_device(tmp_path / "ru", hq, extra=f'[printer]\nurl = "{fake.url}"\n')
        run = dev.run("print-test", "--lang", "ru")
        assert run.rc == 1
        assert "ОШИБКА [paper_out]: В принтере закончилась бумага" in run.out, run.out
        assert "out of paper" not in run.out and "FAILED" not in run.out
        assert dev.import_(hq.bundle(["COFFEE-0001"])).rc == 0
        rid = dev.verdict("COFFEE-0001", "--confirm")["redemption_id"]
        run = dev.run("reprint", rid, "--lang", "ru")
        assert run.rc == 1 and run.out.startswith("queued: В принтере закончилась бумага"), run.out
        assert "Чек сохранён: напечатайте его повторно из меню персонала." in run.out
        assert dev.run("reprint", rid, "--json", "--lang", "ru").json()["message"].startswith(
            "Printer is out of paper")  # machine-readable output stays English
        run = dev.run("print-queue", "--lang", "ru")
        assert run.rc == 1 and "попыток: 2" in run.out and " КОПИЯ " in run.out
    dev.path.write_text(dev.path.read_text().replace(fake.url, f"preview://{tmp_path}/p").replace(
        "[trust.keys]", 'language = "kk"\n\n[trust.keys]'))
    run = dev.run("print-queue", "--retry")
    assert run.rc == 0 and run.out.startswith("printed: Чек басылды.") and "басып шығару кезегі бос" in run.out
    run = dev.run("reprint", "no-such-id")
    assert run.rc == 1 and "бұл құрылғыда no-such-id пайдалануы жоқ" in run.err
    run = dev.run("print-test", "--printer", "usb://zz", "--lang", "ru")
    assert run.rc == 2 and "ошибка конфигурации: --printer usb://zz: адрес USB-принтера" in run.err
    run = dev.run("print-test", "--printer", f"preview://{tmp_path}/p")
    assert run.rc == 0 and "басылды ->" in run.out
