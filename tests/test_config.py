"""The TOML config: a misspelt key is reported (file, section, key, a suggestion), not
silently ignored, and the kiosk still starts; a value of the wrong type (``true`` for a
number or a text) is refused with an error naming the file, the section and the key."""

import json

import pytest
from helpers import run_main

from kiosk import cli, config
from kiosk.errors import ConfigError
from kiosk.ui import settings


def _write(tmp_path, extra: str):
    path = tmp_path / "kiosk.toml"
    path.write_text(f'[device]\nid = "k1"\nstore = "s1"\nprogram = "p1"\n'
                    f'data_dir = "{tmp_path / "data"}"\n[trust.keys]\n{extra}')
    return path


def test_typos_are_warned_with_a_suggestion(tmp_path):
    path = _write(tmp_path, '[printer]\npapermm = 58\n[ui]\nfullscreen = true\n[cameras]\n')
    warnings = config.load(path).warnings
    assert len(warnings) == 2
    assert "[printer] unknown key 'papermm'" in warnings[0] and "'paper_mm'" in warnings[0]
    assert "unknown section [cameras]" in warnings[1] and "'camera'" in warnings[1]


def test_the_cli_prints_the_warning_and_goes_on(tmp_path):
    path = _write(tmp_path, '[redeem]\nvoid_window_minute = 5\n')
    run = run_main(cli.main, ["--config", path, "codes", "status", "--json"])
    assert run.rc == 0
    assert "config warning" in run.err and "void_window_minute" in run.err
    assert json.loads(run.out)["installed"] is False


def test_a_clean_config_has_no_warnings(tmp_path):
    path = _write(tmp_path, '[printer]\nurl = "none"\npaper_mm = 58\n[mqtt]\nbroker = "mqtt://h"\n')
    assert config.load(path).warnings == []


def test_true_is_not_a_number_of_minutes(tmp_path):
    """TOML `true` must not pass as 1 where a number (int or float) is expected."""
    import pytest

    from kiosk.errors import ConfigError

    path = _write(tmp_path, "[redeem]\nvoid_window_minutes = true\n")
    with pytest.raises(ConfigError, match=r"\[redeem\] void_window_minutes: must be int or float"):
        config.load(path)


# -- Config type errors: TOML ``true`` is not a number.
#
# Python's bool is an int, so a plain isinstance check would take ``width = true`` as
# a 1-pixel window or ``max_pin_tries = true`` as one try. The config must refuse it
# with an error naming the file, the section and the key.

BASE = """[device]
id = "kiosk-1"
store = "s1"
program = "demo"
data_dir = "data"
"""


def load(tmp_path, extra: str) -> config.Config:
    path = tmp_path / "kiosk.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return config.load(path)


@pytest.mark.parametrize("key", ["max_pin_tries", "width"])
def test_boolean_for_an_integer_key_is_refused(tmp_path, key):
    cfg = load(tmp_path, f"[ui]\n{key} = true\n")
    with pytest.raises(ConfigError) as err:
        settings.from_config(cfg)
    message = str(err.value)
    assert f"[ui] {key}: must be int" in message
    assert str(tmp_path / "kiosk.toml") in message


def test_integer_keys_still_take_integers(tmp_path):
    s = settings.from_config(load(tmp_path, "[ui]\nmax_pin_tries = 7\nwidth = 1024\n"))
    assert (s.max_pin_tries, s.width) == (7, 1024)


def test_boolean_for_a_text_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[device\] language: must be str"):
        load(tmp_path, "language = true\n")


# -- The technician reads config errors in the device's language ------------------------
#
# Each case is a real bad config read by the code that reads that section; the error
# must exist in every language (a message that goes back to an English-only f-string
# fails here), and str() of it stays the English line of the logs.

def _device_errors(tmp_path, text):
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    return config.load(path)


def _section_error(extra, read):
    def make(tmp_path):
        return read(config.load(_write(tmp_path, extra)))
    return make


def _camera(cfg):
    from kiosk.hardware.camera import settings_from_section
    return settings_from_section(cfg.section("camera"))


def _gpio(cfg):
    from kiosk.hardware.signals import Signals
    return Signals.from_config(cfg.section("gpio"))


def _mqtt(cfg):
    from kiosk.connection import from_section
    return from_section(cfg.section("mqtt"))


def _printer(cfg):
    from kiosk import printing
    return printing.printer_from_config(cfg)


def _receipt(cfg):
    from kiosk import printing
    return printing.settings_from_config(cfg)


def _audit(cfg):
    from kiosk.core import audit
    return audit.keep_days(cfg)


def _agent(cfg):
    from sync.agent import Agent
    return Agent(cfg)


def _agent_settings(cfg):
    from sync.agent import AgentSettings
    return AgentSettings.from_section(cfg.section("mqtt"))


CONFIG_ERRORS = {
    "not toml": lambda p: _device_errors(p, "[device\n"),
    "no file": lambda p: config.load(p / "missing.toml"),
    "bad id": lambda p: _device_errors(p, '[device]\nid = "bad id!"\n'),
    "missing id": lambda p: _device_errors(p, '[device]\nstore = "s"\n'),
    "wrong type": lambda p: _device_errors(p, '[device]\nid = 7\n'),
    "language": lambda p: _device_errors(p, '[device]\nid = "k"\nstore = "s"\nprogram = "p"\n'
                                            'data_dir = "d"\nlanguage = "xx"\n'),
    "not a table": lambda p: _device_errors(p, 'device = 3\n'),
    "void window": _section_error("[redeem]\nvoid_window_minutes = 99999999\n", lambda c: c),
    "pattern": _section_error('[redeem]\npattern = "("\n', lambda c: c),
    "key file": _section_error('hq1 = "missing.pem"\n', lambda c: c),
    "printer url": _section_error('[printer]\nurl = "usb://zz"\n', _printer),
    "printer scheme": _section_error('[printer]\nurl = "lpt://1"\n', _printer),
    "printer timeout": _section_error("[printer]\ntimeout_s = 99\n", _printer),
    "time zone": _section_error('[receipt]\ntimezone = "Mars/Base"\n', _receipt),
    "window size": _section_error("[ui]\nwidth = 10\n", settings.from_config),
    "timeout": _section_error("[ui]\nverdict_timeout = 0\n", settings.from_config),
    "volume": _section_error("[ui]\nsound_volume = 3\n", settings.from_config),
    "pin hash": _section_error('[ui]\npin_hash = "md5$1$x$y"\n', settings.from_config),
    "broker url": _section_error('[mqtt]\nbroker = "http://x"\n', _mqtt),
    "keepalive": _section_error('[mqtt]\nbroker = "mqtt://h"\nkeepalive = 1\n', _mqtt),
    "camera fps": _section_error("[camera]\nfps = -1\n", _camera),
    "gpio buzzer": _section_error('[gpio]\nbuzzer = 17\nbuzzer_type = "loud"\n', _gpio),
    "audit": _section_error("[audit]\nkeep_days = 0\n", _audit),
    "sync broker": _section_error("", _agent),
    "sync heartbeat": _section_error('[mqtt]\nbroker = "mqtt://h"\nheartbeat_seconds = 0\n', _agent_settings),
    "sync batch": _section_error('[mqtt]\nbroker = "mqtt://h"\nbatch_size = 99999\n', _agent_settings),
}


@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_config_errors_exist_in_every_language(tmp_path, case):
    from kiosk.i18n import say

    with pytest.raises(ConfigError) as caught:
        CONFIG_ERRORS[case](tmp_path)
    english = str(caught.value)
    assert say(caught.value, "en") == english and english.isascii()
    for lang in ("uz", "kk", "ru"):
        said = say(caught.value, lang)
        assert said != english, f"{case}: English only: {english}"
        if lang != "uz":
            assert any("\u0400" <= ch <= "\u04ff" for ch in said), said


def test_the_cli_says_config_errors_and_warnings_in_the_configured_language(tmp_path):
    path = _write(tmp_path, '[redeem]\nvoid_window_minute = 5\n').read_text()
    good = tmp_path / "kiosk.toml"
    good.write_text(path.replace("[trust.keys]", 'language = "ru"\n[trust.keys]'))
    run = run_main(cli.main, ["--config", good, "codes", "status"])
    assert "kiosk: предупреждение конфигурации: " in run.err and "неизвестный ключ 'void_window_minute'" in run.err
    assert "может быть, 'void_window_minutes'?" in run.err
    bad = tmp_path / "bad.toml"
    bad.write_text('[device]\nlanguage = "uz"\nid = "bad id!"\n')
    run = run_main(cli.main, ["--config", bad, "history"])
    assert run.rc == 2 and run.err.startswith("kiosk: konfiguratsiya xatosi: ") and "boʻlishi kerak" in run.err
    run = run_main(cli.main, ["--config", bad, "history", "--lang", "en"])
    assert run.err == f"kiosk: config error: {bad}: [device] id: 'bad id!' must be 1-64 letters, " \
                      "digits, '.', '_' or '-'\n"
    run = run_main(cli.main, ["--config", bad, "doctor", "--skip", "camera", "--lang", "kk"])
    assert "FAIL  config" in run.out and "болуы керек" in run.out


def test_trusted_keys_load_cryptography_only_when_a_signature_is_checked(tmp_path):
    """The counter UI reads the trusted keys but never verifies: it must not pay the
    ~10 MB of cryptography's core for them (issue 10's memory goal); the key still
    verifies exactly as cryptography's own object does once it is used."""
    import subprocess
    import sys

    from kiosk.core import keys

    private, public = keys.generate(tmp_path / "keys")
    path = _write(tmp_path, f'hq = "{public}"\n')
    signature = keys.load_private(private).sign(b"manifest")
    child = f"""
import sys
from kiosk import config
import kiosk.ui.app, kiosk.ui.parts, kiosk.ui.runner, kiosk.context
cfg = config.load({str(path)!r})
assert "cryptography" not in sys.modules, "loaded before any signature check"
from kiosk.core import keys
key = cfg.trusted_keys["hq"]
assert keys.verify(key, bytes.fromhex({signature.hex()!r}), b"manifest")
assert not keys.verify(key, bytes.fromhex({signature.hex()!r}), b"another manifest")
assert keys.public_pem(key) == open({str(public)!r}, "rb").read()
assert "cryptography" in sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "KIVY_NO_ARGS": "1"})
    assert done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_a_trusted_key_that_is_not_ed25519_is_still_refused_by_name(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    pem = tmp_path / "x25519.pub.pem"
    pem.write_bytes(X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match="is not an Ed25519 public key PEM"):
        config.load(_write(tmp_path, f'hq = "{pem}"\n'))
    pem.write_text("-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match="is not an Ed25519 public key PEM"):
        config.load(_write(tmp_path, f'hq = "{pem}"\n'))

def test_kiosk_sync_says_its_start_up_errors_in_the_configured_language(tmp_path):
    from sync import agent_cli

    text = _write(tmp_path, "").read_text().replace("[trust.keys]", 'language = "kk"\n[trust.keys]')
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    run = run_main(agent_cli.main, ["--config", path])
    assert run.rc == 2 and run.err.startswith("kiosk-sync: конфигурация қатесі: "), run.err
    assert "[mqtt] broker" in run.err and "mqtts://hq.example.com:8883" in run.err
    assert "missing" not in run.err and "sync agent" not in run.err
