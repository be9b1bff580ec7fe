"""A misspelt config key is reported (file, section, key, a suggestion), not silently
ignored; the kiosk still starts, since the rest of the file is fine."""

import json

from helpers import run_main

from kiosk import cli, config


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
