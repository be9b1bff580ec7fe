"""``kiosk scan``: headless scanning from the command line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk import cli
from kiosk.hardware.camera import synthetic as syn


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rec")
    frames = [syn.wallet_card("CODE-ONE")] * 8 + [syn.blank()] * 2 + [syn.wallet_card("CODE-TWO", dark=True)] * 8
    return syn.write_frames(folder, frames)


@pytest.fixture(autouse=True)
def no_env_config(monkeypatch, tmp_path):
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    monkeypatch.setattr("kiosk.config.DEFAULT_PATH", tmp_path / "absent.toml")


def write_config(tmp_path: Path, camera: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(f"""
[device]
id = "k1"
store = "s1"
program = "p1"
data_dir = "data"

[camera]
{camera}
""", encoding="utf-8")
    return path


def test_json_lines_one_per_code_and_exit_at_the_end(recording, capsys):
    assert cli.main(["scan", "--camera", f"replay:{recording}?fps=0", "--json"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["payload"], x["frame_index"], x["source"]) for x in lines] == [
        ("CODE-ONE", 0, "camera"), ("CODE-TWO", 10, "camera")]
    assert all(x["decoder"] == "zxing" and x["latency_ms"] >= 0 for x in lines)
    assert "2 code(s) from 18 frame(s)" in err


def test_text_output_and_decoder_choice(recording, capsys):
    assert cli.main(["scan", "--camera", f"replay:{recording}?fps=0", "--decoder", "pyzbar"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "pyzbar" in out[0] and out[0].endswith("CODE-ONE")


@pytest.mark.timeout(60)  # a replay that wrongly loops would never end
def test_replay_from_config_plays_once_even_when_set_to_loop(tmp_path, recording, capsys):
    config = write_config(tmp_path, f'source = "replay:{recording}?fps=0"\nloop = true\nrepeat_window = 3.0')
    assert cli.main(["--config", str(config), "scan", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x)["payload"] for x in out.splitlines()] == ["CODE-ONE", "CODE-TWO"]
    assert "from 18 frame(s)" in err


def test_max_events_stops_early(recording, capsys):
    assert cli.main(["scan", "--camera", f"replay:{recording}?fps=0", "--max-events", "1", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_usage_and_camera_errors(tmp_path, recording, capsys):
    assert cli.main(["scan"]) == 2
    assert "no camera: pass --camera SOURCE" in capsys.readouterr().err
    assert cli.main(["scan", "--camera", "none"]) == 1
    assert "means no camera" in capsys.readouterr().err
    assert cli.main(["scan", "--camera", "none", "--lang", "kk"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kiosk scan: ") and "камера жоқ" in err and "means no camera" not in err
    assert cli.main(["scan", "--camera", "webcam"]) == 2
    assert "'webcam' is not one of" in capsys.readouterr().err
    assert cli.main(["scan", "--camera", f"replay:{tmp_path / 'gone'}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["scan", "--camera", f"replay:{tmp_path / 'gone'}", "--lang", "ru"]) == 1
    err = capsys.readouterr().err
    assert "не существует" in err and "does not exist" not in err
    assert cli.main(["scan", "--camera", f"replay:{recording}", "--decoder", "zbar"]) == 2
    assert "unknown decoder 'zbar'" in capsys.readouterr().err
    bad = write_config(tmp_path, "repeat_window = -1")
    assert cli.main(["--config", str(bad), "scan", "--camera", f"replay:{recording}"]) == 2
    assert "[camera] repeat_window: must not be negative" in capsys.readouterr().err


def test_the_installed_command_runs(recording):
    kiosk = Path(sys.executable).with_name("kiosk")
    done = subprocess.run([str(kiosk), "scan", "--camera", f"replay:{recording}", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["payload"] for x in done.stdout.splitlines()] == ["CODE-ONE", "CODE-TWO"]


def test_text_columns_stay_aligned_for_the_auto_plans_long_decoder_labels(tmp_path, capsys):
    dense = "https://loyalty.example.com/r/" + "ABCDEFGHJK" * 8  # read only at full resolution
    view = syn.noise(syn.blur(syn.wallet_card(dense, size=(1280, 960), module_px=3), 1.3), 8)
    plain = syn.wallet_card("CODE-ONE", size=(1280, 960), module_px=10)
    syn.write_frames(tmp_path, [plain] * 3 + [syn.blank((1280, 960))] + [view] * 6)
    assert cli.main(["scan", "--camera", f"replay:{tmp_path}?fps=0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in out] == ["CODE-ONE", dense]
    labels = [line.split()[2] for line in out]
    assert labels[0] == "zxing" and "@" in labels[1]
    assert len({line.index(" ms  ") for line in out}) == 1  # one column for every label
    # every label the auto plan can report, the longest too, fits the column
    from kiosk.commands.scan import _line
    from kiosk.hardware.decoder import make_decoder
    from kiosk.hardware.scanner import ScanEvent

    labels = make_decoder("auto").labels()
    assert "zxing-global+equalize@lores" in labels
    width = max(map(len, labels))
    lines = [_line(ScanEvent("X", label, 7, 1.5), width) for label in labels]
    assert len({line.index(" ms  ") for line in lines}) == 1
