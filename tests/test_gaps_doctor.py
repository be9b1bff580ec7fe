"""``kiosk doctor``: a check that crashes is a FAIL, and the exit code says so.

A crashing check means the technician cannot trust that part of the kiosk; reporting
it as a warning would let a script (or the image's first-boot test) pass a broken
kiosk. The crash is injected into one real check; the others run for real."""

from kiosk.doctor import FAIL, OK, Check, system

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

