"""Config type errors: TOML ``true`` is not a number.

Python's bool is an int, so a plain isinstance check would take ``width = true`` as
a 1-pixel window or ``max_pin_tries = true`` as one try. The config must refuse it
with an error naming the file, the section and the key."""

import pytest

from kiosk import config
from kiosk.errors import ConfigError
from kiosk.ui import settings

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
