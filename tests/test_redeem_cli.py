"""``kiosk redeem`` through the real CLI: every verdict, exit codes, config errors."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from helpers import device_toml

from kiosk.core import timefmt

NOW = datetime.now(UTC)
PAST = timefmt.format(NOW - timedelta(days=2))
SOON = timefmt.format(NOW + timedelta(days=30))
HEADER = ("code", "reward_id", "valid_from", "valid_until", "max_uses", "stores", "op")
CODES = [
    {"code": "READY-0001"},
    {"code": "READY-0002", "reward_id": "ten"},
    {"code": "MULTI-0003", "max_uses": "2"},
    {"code": "OLD-0004", "valid_until": PAST},
    {"code": "SOON-0005", "valid_from": SOON},
    {"code": "GONE-0006", "op": "revoke"},
    {"code": "OTHER-0007", "stores": "s2;s3"},
    {"code": "HERE-0008", "stores": "s1;s2"},
]


@pytest.fixture
def counter(hq, device):
    assert device.import_(hq.bundle(CODES, 1, header=HEADER)).rc == 0
    return device


def check(dev, text, *extra):
    v = dev.verdict(text, *extra)
    return v["verdict"], v["rc"], v


def test_ready_with_title_in_each_language(counter):
    verdict, rc, v = check(counter, "ready 0001")
    assert (verdict, rc) == ("ready", 0)
    assert v["reward_id"] == "coffee" and v["title"] == "Free coffee"
    assert v["masked_code"] == "0001" and v["redemption_id"] is None
    assert check(counter, "READY-0001", "--lang", "ru")[2]["title"] == "Бесплатный кофе"
    assert check(counter, "READY-0001", "--lang", "kk")[2]["title"] == "Тегін кофе"
    # a title missing in a language falls back to English
    assert check(counter, "READY-0002", "--lang", "uz")[2]["title"] == "10% off"


def test_configured_language_is_the_default(tmp_path, hq, counter):
    counter.path.write_text(counter.path.read_text().replace(
        '[trust.keys]', 'language = "uz"\n\n[trust.keys]'))
    assert check(counter, "READY-0001")[2]["title"] == "Bepul qahva"


def test_redeemed_then_already_redeemed_with_when_and_where(counter):
    run = counter.run("redeem", "https://w.example/r?code=READY-0001", "--confirm", "--json",
                      "--staff", "ana")
    assert run.rc == 0
    v = run.json()
    assert v["verdict"] == "redeemed" and v["redemption_id"] and v["title"] == "Free coffee"
    assert (v["detail"]["uses"], v["detail"]["last_device"]) == (1, "kiosk-1")
    verdict, rc, again = check(counter, "READY-0001")
    assert (verdict, rc) == ("already_redeemed", 1)
    assert again["detail"]["last_device"] == "kiosk-1"
    assert again["detail"]["last_store"] == "s1"
    assert again["detail"]["last_at"] == v["at"]
    text = counter.run("redeem", "READY-0001")
    assert text.rc == 1 and "already_redeemed" in text.out
    assert f"last used {v['at']} at kiosk-1 in store s1" in text.out
    # confirming again records nothing
    assert counter.run("redeem", "READY-0001", "--confirm").rc == 1
    assert len(counter.run("history", "--json").json()) == 1


def test_multi_use_code_is_exhausted(counter):
    assert counter.run("redeem", "MULTI-0003", "--confirm").rc == 0
    verdict, rc, v = check(counter, "MULTI-0003")
    assert (verdict, rc, v["detail"]["uses"]) == ("ready", 0, 1)
    assert counter.run("redeem", "MULTI-0003", "--confirm").rc == 0
    verdict, rc, v = check(counter, "MULTI-0003")
    assert (verdict, rc) == ("exhausted", 1)
    assert (v["detail"]["uses"], v["detail"]["max_uses"]) == (2, 2)


@pytest.mark.parametrize("text, verdict", [
    ("OLD-0004", "expired"),
    ("SOON-0005", "not_yet_valid"),
    ("GONE-0006", "revoked"),
    ("NOPE-9999", "unknown"),
    ("OTHER-0007", "wrong_store"),
    ("WIFI:S:cafe;T:WPA;P:secret;;", "not_a_code"),
    ("https://cafe.example/menu", "not_a_code"),
])
def test_refusals_exit_1(counter, text, verdict):
    got, rc, v = check(counter, text)
    assert (got, rc) == (verdict, 1)
    assert counter.run("redeem", text, "--confirm").rc == 1
    assert counter.run("history", "--json").json() == []
    human = counter.run("redeem", text)
    assert human.out.startswith(f"{verdict}: ")


def test_refusal_details(counter):
    assert check(counter, "OTHER-0007")[2]["detail"]["stores"] == ["s2", "s3"]
    assert check(counter, "HERE-0008")[0] == "ready"
    assert "valid until" in counter.run("redeem", "OLD-0004").out
    assert "valid from" in counter.run("redeem", "SOON-0005").out
    assert "valid in: s2, s3" in counter.run("redeem", "OTHER-0007").out


def test_real_process_exit_codes_and_json(counter):
    """The console entry point in its own process: 0 ready, 1 refusal, 2 usage."""
    env = {**os.environ, "KIOSK_CONFIG": str(counter.path)}

    def kiosk(*args):
        return subprocess.run([sys.executable, "-m", "kiosk.cli", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    ok = kiosk("redeem", "READY-0002", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verdict"] == "ready"
    assert kiosk("redeem", "NOPE-9999").returncode == 1
    assert kiosk("redeem").returncode == 2
    assert kiosk("frobnicate").returncode == 2


# -- configuration errors: exit 2, name the file and the key ------------------------------

def bad_config(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_with(path, *args):
    from helpers import run_main

    from kiosk import cli
    return run_main(cli.main, ["--config", path, *args])


def test_config_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    run = run_with(path, "redeem", "READY-0001")
    assert run.rc == 2 and str(path) in run.err and "not found" in run.err


def test_config_not_toml(tmp_path):
    path = bad_config(tmp_path, "[device\nid = 1\n")
    run = run_with(path, "codes", "status")
    assert run.rc == 2 and str(path) in run.err and "not valid TOML" in run.err


@pytest.mark.parametrize("key", ["id", "store", "program", "data_dir"])
def test_config_missing_key(tmp_path, hq, key):
    text = device_toml(tmp_path / "data", {"hq1": hq.pub})
    text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} ="))
    run = run_with(bad_config(tmp_path, text), "redeem", "READY-0001")
    assert run.rc == 2
    assert str(tmp_path / "bad.toml") in run.err and f"[device] {key}: missing" in run.err


def test_config_bad_trust_key_path(tmp_path):
    text = device_toml(tmp_path / "data", {"hq1": tmp_path / "nokey.pem"})
    run = run_with(bad_config(tmp_path, text), "codes", "status")
    assert run.rc == 2 and str(tmp_path / "bad.toml") in run.err
    assert "[trust.keys] hq1" in run.err and "nokey.pem does not exist" in run.err


def test_config_trust_key_not_a_pem(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    run = run_with(bad_config(tmp_path, device_toml(tmp_path / "data", {"hq1": junk})),
                   "codes", "status")
    assert run.rc == 2 and "[trust.keys] hq1" in run.err and "not an Ed25519 public key" in run.err


@pytest.mark.parametrize("extra, words", [
    ('[redeem]\nvoid_window_minutes = "ten"\n', "[redeem] void_window_minutes: must be"),
    ('[redeem]\npattern = "(unclosed"\n', "[redeem] pattern: bad regular expression"),
    ('[redeem]\npattern = "LOYAL:(.*)"\n', "named group"),
])
def test_config_bad_redeem_values(tmp_path, hq, extra, words):
    text = device_toml(tmp_path / "data", {"hq1": hq.pub}, extra=extra)
    run = run_with(bad_config(tmp_path, text), "redeem", "X")
    assert run.rc == 2 and words in run.err


def test_config_bad_device_value(tmp_path, hq):
    text = device_toml(tmp_path / "data", {"hq1": hq.pub}).replace('id = "kiosk-1"', 'id = 7')
    run = run_with(bad_config(tmp_path, text), "redeem", "X")
    assert run.rc == 2 and "[device] id: must be str" in run.err


def test_config_from_environment(counter, monkeypatch):
    from helpers import run_main

    from kiosk import cli
    monkeypatch.setenv("KIOSK_CONFIG", str(counter.path))
    run = run_main(cli.main, ["redeem", "READY-0001", "--json"])
    assert run.rc == 0 and run.json()["verdict"] == "ready"


def test_configured_pattern_is_used(tmp_path, hq):
    from helpers import make_device
    dev = make_device(tmp_path / "p", hq, extra='[redeem]\npattern = "LOYAL:(?P<code>[A-Z0-9-]+)"\n')
    assert dev.import_(hq.bundle(["PATT-0001"])).rc == 0
    assert check(dev, "LOYAL:PATT-0001")[0] == "ready"


def test_text_output_speaks_the_chosen_or_configured_language(counter):
    """The verdict and the staff line come from the kiosk's catalogs (kiosk.i18n)."""
    run = counter.run("redeem", "OLD-0004", "--lang", "ru")
    assert run.rc == 1
    assert "expired: Срок действия награды истёк" in run.out
    assert "действует до " in run.out
    assert "Магазин" not in run.out and "valid until" not in run.out
    assert "valid in: s2, s3" in counter.run("redeem", "OTHER-0007", "--lang", "en").out
    counter.path.write_text(counter.path.read_text().replace(
        '[trust.keys]', 'language = "kk"\n\n[trust.keys]'))
    kazakh = counter.run("redeem", "OTHER-0007")
    assert "жарамды дүкендер: s2, s3" in kazakh.out
    assert "wrong_store: Бұл сыйлық басқа дүкенге арналған" in kazakh.out
    assert "valid in:" not in kazakh.out
    assert "valid in: s2, s3" in counter.run("redeem", "OTHER-0007", "--lang", "en").out
