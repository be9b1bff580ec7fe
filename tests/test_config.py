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
