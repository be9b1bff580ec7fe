"""``kiosk doctor`` against real parts: a replay camera showing a QR test card, the
fake network printer, gpiozero's MockFactory, a real mosquitto with TLS and
per-device passwords, a real SQLite store with a signed code list."""

import json
import os
import textwrap

import pytest
import tomli_w
from helpers import make_bundle, run_main
from PIL import Image

from kiosk import cli, config
from kiosk.doctor import FAIL, OK, WARN, Check, Options, run_checks, system
from kiosk.hardware.camera import synthetic
from kiosk.hardware.printer.fake_server import HEALTHY, PAPER_OUT, FakeNetworkPrinter
from sync.testing import Broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(tmp_path_factory.mktemp("broker")) as b:
        yield b


@pytest.fixture
def card(tmp_path):
    """A recorded camera view of the technician's test card (a QR) and an empty view."""
    shown, empty = tmp_path / "card", tmp_path / "empty"
    shown.mkdir()
    empty.mkdir()
    Image.fromarray(synthetic.wallet_card("KIOSK-TEST-CARD")).save(shown / "f0.png")
    Image.fromarray(synthetic.blank()).save(empty / "f0.png")
    return shown, empty


def write_config(device, **sections) -> config.Config:
    """The device's kiosk.toml plus the given sections."""
    data = config.load(device.path).raw
    data.update(sections)
    device.path.write_text(tomli_w.dumps(data))
    return config.load(device.path)


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def healthy(device, hq, broker, card, printer_url):
    assert device.import_(make_bundle(hq, ["ABC-123"])).rc == 0
    password = broker.add_device(hq.program, "s1", "kiosk-1")
    return write_config(
        device,
        camera={"source": f"replay:{card[0]}"},
        printer={"url": printer_url, "timeout_s": 2},
        gpio={"green_led": 17, "red_led": 27, "buzzer": 22, "button": 23},
        mqtt={"broker": broker.url, "ca": str(broker.pki["ca"]), "username": "kiosk-1",
              "password_file": str(password)})


@pytest.fixture(autouse=True)
def mock_gpio(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")


def test_a_healthy_kiosk_passes(device, hq, broker, card):
    with FakeNetworkPrinter(HEALTHY) as printer:
        cfg = healthy(device, hq, broker, card, printer.url)
        checks = by_name(run_checks(cfg, decode_wait_s=5))
    for name in ("config", "database", "code_list", "outbox", "broker", "camera", "decode",
                 "printer", "gpio", "disk"):
        assert checks[name].status == OK, checks[name]
    assert "KIOSK-TEST-CARD" in checks["decode"].message
    assert "credentials accepted" in checks["broker"].message
    assert "buzzer" in checks["gpio"].message and "button" in checks["gpio"].message
    assert checks["sync"].status == WARN  # no kiosk-sync running in this test


def test_cli_json_and_exit_code(device, hq, broker, card):
    with FakeNetworkPrinter(PAPER_OUT) as printer:
        healthy(device, hq, broker, card, printer.url)
        run = run_main(cli.main, ["--config", device.path, "doctor", "--json"])
    doc = json.loads(run.out)
    checks = by_name(type("C", (), d) for d in doc["checks"])
    assert checks["printer"].status == FAIL and "paper" in checks["printer"].message.lower()
    assert checks["printer"].hint
    assert doc["status"] == FAIL and run.rc == 1
    assert {"name", "status", "message", "hint"} <= set(doc["checks"][0])


def test_wrong_password_bad_ca_and_unreachable_broker_fail(device, hq, broker, tmp_path):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    broker.add_device(hq.program, "s1", "kiosk-1")
    base = {"broker": broker.url, "ca": str(broker.pki["ca"]), "username": "kiosk-1"}
    cases = [
        ({**base, "password_file": str(wrong)}, "refused"),
        ({**base, "ca": str(_other_ca(tmp_path))}, "not trusted"),
        ({**base, "broker": "mqtts://127.0.0.1:9"}, "cannot reach"),
    ]
    for mqtt, expected in cases:
        cfg = write_config(device, mqtt=mqtt)
        check = run_checks(cfg, Options(broker_timeout_s=5, skip=_all_but("broker")))
        broker_check = by_name(check)["broker"]
        assert broker_check.status == FAIL and expected in broker_check.message, broker_check


def _other_ca(tmp_path):
    from sync.testing import make_pki
    return make_pki(tmp_path / "other-pki", clients=())["ca"]


def _all_but(name):
    return {"database", "code_list", "outbox", "sync_agent", "broker", "camera_and_decode",
            "printer", "gpio", "disk", "clock", "temperature", "throttling", "last_boot"} - {name}


def test_missing_list_camera_without_code_and_dead_camera(device, card, tmp_path):
    cfg = write_config(device, camera={"source": f"replay:{card[1]}"})
    checks = by_name(run_checks(cfg, decode_wait_s=0.5))
    assert checks["code_list"].status == FAIL and "no code list" in checks["code_list"].message
    assert checks["camera"].status == OK and checks["decode"].status == FAIL
    cfg = write_config(device, camera={"source": f"replay:{tmp_path / 'gone'}"})
    checks = by_name(run_checks(cfg))
    assert checks["camera"].status == FAIL and checks["camera"].hint
    assert "decode" not in checks
    russian = by_name(run_checks(cfg, lang="ru"))["camera"]  # the camera's own error, in Russian
    assert "не существует" in russian.message and "does not exist" not in russian.message
    cfg = write_config(device, camera={"source": f"replay:{card[0]}", "fps": 0})
    camera = by_name(run_checks(cfg))["camera"]
    assert camera.status == FAIL and "[camera] fps" in camera.message and "kiosk.toml" in camera.hint


def test_broken_config_still_reports_the_system(tmp_path):
    bad = tmp_path / "kiosk.toml"
    bad.write_text('[device]\nid = "x"\n')
    run = run_main(cli.main, ["--config", bad, "doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(run.out)["checks"]}
    assert run.rc == 1 and checks["config"]["status"] == FAIL
    assert "store" in checks["config"]["message"] and "disk" in checks and "clock" in checks


def test_temperature_and_throttling(device, tmp_path, monkeypatch):
    cfg = config.load(device.path)
    thermal = tmp_path / "temp"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    vcgencmd = bin_dir / "vcgencmd"  # a stand-in for the Pi firmware tool
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    only = _all_but("temperature") - {"throttling"}
    for milli, value, temp_status, thr_status in [
        (52000, "0x0", OK, OK), (78000, "0x50000", WARN, WARN), (86000, "0x50005", FAIL, FAIL),
    ]:
        thermal.write_text(f"{milli}\n")
        vcgencmd.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            [ "$1" = get_throttled ] && echo "throttled={value}"
            """))
        vcgencmd.chmod(0o755)
        checks = by_name(run_checks(cfg, Options(thermal_path=thermal, skip=only)))
        assert checks["temperature"].status == temp_status
        assert checks["throttling"].status == thr_status, checks["throttling"]
    assert "under-voltage" in checks["throttling"].message and "power supply" in checks["throttling"].hint


def test_checks_absent_when_the_machine_has_no_sensor(device, tmp_path):
    checks = by_name(run_checks(config.load(device.path),
                                Options(thermal_path=tmp_path / "none", vcgencmd="no-such-tool",
                                        skip=_all_but("temperature") - {"throttling"})))
    assert "temperature" not in checks and "throttling" not in checks


def test_sync_agent_state_comes_from_the_shared_database(device):
    from datetime import UTC, datetime

    from kiosk.core import syncstate
    from kiosk.i18n import Msg

    cfg = config.load(device.path)
    ledger = device.ledger()
    now = datetime.now(UTC)
    only = _all_but("sync_agent")
    syncstate.write_status(ledger.store, seen_at=now, connected=False, last_error="TLS: bad CA")
    check = by_name(run_checks(cfg, Options(skip=only)))["sync"]
    assert check.status == WARN and "TLS: bad CA" in check.message
    # the agent's own errors are Msgs: the doctor shows them in the technician's language
    syncstate.write_status(ledger.store, seen_at=now, connected=False,
                           last_error=Msg("cannot reach the broker"))
    check = by_name(run_checks(cfg, Options(skip=only), lang="ru"))["sync"]
    assert check.status == WARN and "брокер недоступен" in check.message, check.message
    check = by_name(run_checks(cfg, Options(skip=only)))["sync"]
    assert "cannot reach the broker" in check.message
    syncstate.write_status(ledger.store, seen_at=now, connected=True, last_sync=now)
    check = by_name(run_checks(cfg, Options(skip=only)))["sync"]
    assert check.status == OK and "connected" in check.message
    ledger.store.close()


def test_skip_accepts_printed_names_and_refuses_unknown_ones(tmp_path, capsys):
    """`--skip sync` (the printed name) skips the agent check; a typo is a usage error,
    not a silently ignored word."""
    from kiosk import cli

    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f'[device]\nid = "k1"\nstore = "s1"\nprogram = "p1"\n'
                   f'data_dir = "{tmp_path / "data"}"\n[trust.keys]\n')
    assert cli.main(["--config", str(cfg), "doctor", "--json", "--skip", "sync",
                     "--skip", "camera", "--skip", "broker"]) in (0, 1)
    import json

    names = [c["name"] for c in json.loads(capsys.readouterr().out)["checks"]]
    assert "sync" not in names and "camera" not in names and "database" in names
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(cfg), "doctor", "--skip", "snyc"])
    assert exit_info.value.code == 2
    assert "no check named 'snyc'" in capsys.readouterr().err


# -- ``kiosk doctor``: a check that crashes is a FAIL, and the exit code says so.
#
# A crashing check means the technician cannot trust that part of the kiosk; reporting
# it as a warning would let a script (or the image's first-boot test) pass a broken
# kiosk. The crash is injected into one real check; the others run for real.

ONLY_CONFIG_AND_TEMPERATURE = [
    arg for name in ("database", "code_list", "outbox", "sync_agent", "broker",
                     "camera_and_decode", "printer", "gpio", "disk", "clock", "throttling")
    for arg in ("--skip", name)]


def doctor(device):
    run = device.run("doctor", "--json", *ONLY_CONFIG_AND_TEMPERATURE)
    return run.rc, run.json()


def test_a_crashing_check_fails_the_doctor(device, monkeypatch):
    def temperature(ctx):
        raise RuntimeError("sensor driver bug")

    monkeypatch.setattr(system, "temperature", temperature)
    rc, report = doctor(device)
    found = {c["name"]: c for c in report["checks"]}
    assert found["temperature"]["status"] == FAIL
    assert "check crashed" in found["temperature"]["message"]
    assert "sensor driver bug" in found["temperature"]["message"]
    assert report["status"] == FAIL and rc == 1


def test_the_same_checks_pass_when_nothing_crashes(device, monkeypatch):
    monkeypatch.setattr(system, "temperature", lambda ctx: Check("temperature", OK, "CPU at 45.0 C"))
    rc, report = doctor(device)
    assert [c["status"] for c in report["checks"] if c["status"] == FAIL] == []
    assert rc == 0



def test_last_boot_says_how_the_previous_boot_ended(device, tmp_path):
    """From the persistent journal's previous boot (a stand-in journalctl prints what
    the real one prints) and the watchdog's boot status."""
    cfg = config.load(device.path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    journal = tmp_path / "previous-boot.log"
    tool = bin_dir / "journalctl"
    tool.write_text(f'#!/bin/sh\n[ "$2" = -1 ] && cat "{journal}"\n')
    tool.chmod(0o755)
    bootstatus = tmp_path / "bootstatus"
    only = _all_but("last_boot")

    def check(log: str, status: str = "0"):
        journal.write_text(log)
        bootstatus.write_text(status + "\n")
        return by_name(run_checks(cfg, Options(journalctl=str(tool), watchdog_bootstatus=bootstatus,
                                               skip=only)))["last_boot"]

    clean = check("2026-12-01T14:00:00+0000 pi systemd[1]: Reached target System Reboot.\n"
                  "2026-12-01T14:00:01+0000 pi systemd-shutdown[1]: Syncing filesystems\n")
    assert clean.status == OK and "cleanly" in clean.message
    # the appliance's journal lives on the data partition and is unmounted before the
    # "Reached target" lines: what it still holds of a reboot by StartLimitAction
    escalated = check(
        "2026-12-01T14:00:00+0000 pi systemd[1]: kiosk.service: Start request repeated too quickly.\n"
        "2026-12-01T14:00:00+0000 pi systemd[1]: Rebooting: unit kiosk.service failed\n"
        "2026-12-01T14:00:01+0000 pi systemd[1]: Stopping kiosk-sync.service - redeem-kiosk sync agent...\n")
    assert escalated.status == OK and "cleanly" in escalated.message
    flushed = check("2026-12-01T14:00:02+0000 pi systemd[1]: Stopping systemd-journal-flush.service - "
                    "Flush Journal to Persistent Storage...\n")
    assert flushed.status == OK
    dog = check("2026-12-01T14:03:10+0000 pi kiosk[812]: audit {}\n", status="32")
    assert dog.status == WARN and "watchdog" in dog.message and "14:03:10" in dog.message
    cut = check("2026-12-01T14:03:10+0000 pi kiosk[812]: audit {}\n")
    assert cut.status == WARN and "power loss" in cut.message
    first = check("")
    assert first.status == OK and "no journal of the previous boot" in first.message


# -- ``kiosk doctor`` speaks the kiosk's languages (one gettext domain, kiosk.i18n)
def test_doctor_speaks_the_chosen_or_configured_language(device, tmp_path):
    skip = [a for name in ("database", "outbox", "sync_agent", "broker", "camera_and_decode",
                           "printer", "gpio", "disk", "clock", "temperature", "throttling",
                           "last_boot") for a in ("--skip", name)]
    english = {c["name"]: c for c in device.run("doctor", "--json", *skip).json()["checks"]}
    assert english["code_list"]["message"] == "no code list installed: every scan is refused"
    russian = device.run("doctor", "--json", "--lang", "ru", *skip).json()["checks"]
    found = {c["name"]: c for c in russian}
    assert found["code_list"]["message"] == "список кодов не установлен: каждый скан отклоняется"
    assert found["code_list"]["hint"].startswith("подключите сеть")
    assert found["code_list"]["status"] == FAIL  # the words change, not the finding
    assert found["config"]["message"].startswith("устройство kiosk-1")
    device.path.write_text(device.path.read_text().replace(
        '[trust.keys]', 'language = "kk"\n\n[trust.keys]'))
    text = device.run("doctor", *skip)
    assert "кодтар тізімі орнатылмаған: әр сканерлеу қабылданбайды" in text.out
    assert "құрылғы kiosk-1" in text.out
    assert "1 қате, 0 ескерту" in text.err


def test_printer_faults_are_worded_in_every_language():
    from kiosk.hardware.printer import faults

    err = faults.fault("paper_out", "tcp://10.0.0.5:9100")
    assert str(err) == "Printer is out of paper: load a new roll. (tcp://10.0.0.5:9100)"  # logs
    assert faults.translate(str(err), "uz") == ("Printerda qogʻoz tugadi: yangi rulon qoʻying. "
                                                "(tcp://10.0.0.5:9100)")
    refused = str(faults.classify(ConnectionRefusedError(111, "refused"), "tcp://p:9100"))
    assert faults.translate(refused, "kk").startswith("Принтер қосылымнан бас тартты")
    assert faults.translate(refused, "kk").endswith("(tcp://p:9100)")
    assert faults.translate("something else", "ru") == "something else"

def test_decode_check_reads_a_code_only_the_full_resolution_frame_shows(device, tmp_path):
    """The camera's lores stream is too coarse for this dense code; like the kiosk,
    doctor looks at the full-resolution frame (replay streams both for a large view)."""
    dense = "https://loyalty.example.com/r/" + "ABCDEFGHJK" * 8  # version 8: 49 modules
    view = synthetic.noise(synthetic.blur(synthetic.wallet_card(dense, size=(1280, 960), module_px=3), 1.3), 8)
    (tmp_path / "dense").mkdir()
    Image.fromarray(view).save(tmp_path / "dense" / "f0.png")
    cfg = write_config(device, camera={"source": f"replay:{tmp_path / 'dense'}"})
    checks = by_name(run_checks(cfg, decode_wait_s=3))
    assert checks["camera"].status == OK and "1280x960 full resolution" in checks["camera"].message
    assert checks["decode"].status == OK and dense[:20] in checks["decode"].message
    assert "@crop" in checks["decode"].message or "@full" in checks["decode"].message
