"""First boot as the appliance runs it: provisioning as root, services as an unprivileged
user (issue 12, defects 1, 9 and 10).

The unprivileged side runs for real in a child process with another uid and group
(``setpriv``), so file permissions are checked by the kernel, not assumed. Needs root
(CI runs as root); skipped otherwise.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import run_main

from kiosk import cli, config
from kiosk.doctor import FAIL, run_checks
from sync import hq_cli

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534  # uid nobody, gid nogroup: stands in for the kiosk user and group

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to switch users")


@pytest.fixture
def world(hq):
    """A folder every user may traverse (pytest's tmp_path is root-only)."""
    top = Path(tempfile.mkdtemp(prefix="kiosk-appliance-"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def enrolled(top: Path, hq) -> Path:
    out = top / "boot"
    run = run_main(hq_cli.main, [
        "enroll", "--device", "counter-7", "--store", "main", "--program", "demo",
        "--broker", "mqtts://hq.example:8883", "--trust", f"hq1={hq.pub}",
        "--data-dir", str(top / "data"), "--out", out])
    assert run.rc == 0, run.err
    return out


def as_user(code: str, *, gid: int) -> subprocess.CompletedProcess:
    """Python ``code`` as uid nobody with only group ``gid``."""
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={gid}", "--clear-groups", sys.executable,
         "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOME": "/nonexistent"})


def test_the_service_user_can_read_everything_provisioning_installs(world, hq):
    """Defect 1: keys/ was created root:root 0750, so the kiosk user got a
    PermissionError and every service crash-looped."""
    boot = enrolled(world, hq)
    etc = world / "etc-kiosk"
    run = run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                              "--config-dir", etc, "--group", "nogroup"])
    assert run.rc == 0, run.err
    for folder in (etc, etc / "keys"):
        st = folder.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, NOBODY, 0o750), folder
    (world / "data").mkdir()
    os.chown(world / "data", NOBODY, NOBODY)
    child = as_user(f"from kiosk import config; c = config.load(config.Path('{etc}/kiosk.toml'));"
                    "print(sorted(c.trusted_keys))", gid=NOBODY)
    assert child.returncode == 0 and child.stdout.strip() == "['hq1']", child.stderr


def test_unreadable_files_are_a_clear_problem_not_a_crash(world, hq):
    """Defect 1: a user outside the group gets a one-line reason from the loader, the
    UI's not-provisioned screen and the doctor, never a traceback."""
    boot = enrolled(world, hq)
    etc = world / "etc-kiosk"
    assert run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                               "--config-dir", etc, "--group", "root"]).rc == 0
    etc.chmod(0o755)  # kiosk.toml readable, but keys/ (0750 root:root) is not
    (etc / "kiosk.toml").chmod(0o644)
    code = (f"from kiosk.ui import runner; cfg, problem = runner._not_provisioned_problem("
            f"runner.Path('{etc}/kiosk.toml')); print(cfg is None, problem)")
    child = as_user(code, gid=NOBODY)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("True ") and "cannot read" in child.stdout
    assert "Permission denied" in child.stdout and "hq1" in child.stdout
    doctor = as_user(f"from kiosk import cli; raise SystemExit(cli.main(['--config', "
                     f"'{etc}/kiosk.toml', 'doctor', '--json']))", gid=NOBODY)
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr, doctor.stderr
    assert '"name": "config", "status": "FAIL"' in doctor.stdout.replace("\n", " ").replace(
        "  ", " ") or '"status": "FAIL"' in doctor.stdout
    assert "cannot read" in doctor.stdout


def test_the_password_bytes_are_overwritten_before_the_unlink(world, hq):
    """Defect 10: deleting a file on FAT leaves its bytes in free clusters. A second
    hard link to the same file shows what happened to the data itself."""
    boot = enrolled(world, hq)
    secret = (boot / "mqtt-password").read_bytes()
    assert len(secret.strip()) >= 16
    witness = world / "witness"
    os.link(boot / "mqtt-password", witness)
    etc = world / "etc-kiosk"
    assert run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                               "--config-dir", etc, "--group", "nogroup"]).rc == 0
    assert not (boot / "mqtt-password").exists()
    assert witness.read_bytes() == b"\0" * len(secret)
    assert (etc / "mqtt-password").read_bytes() == secret


def test_doctor_on_a_read_only_data_partition_says_so(world, hq):
    """Defect 9: five "check crashed" lines became one FAIL that names the cause."""
    boot = enrolled(world, hq)
    etc = world / "etc-kiosk"
    assert run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                               "--config-dir", etc, "--group", "root"]).rc == 0
    data = world / "data"
    data.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "kiosk-test", str(data)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        checks = run_checks(config.load(etc / "kiosk.toml"), probe_printer=False,
                            broker_timeout_s=0.5, skip={"camera_and_decode", "broker"})
    finally:
        subprocess.run(["umount", str(data)], check=True)
    assert not [c for c in checks if "crashed" in c.message], checks
    part = next(c for c in checks if c.name == "data_partition")
    assert part.status == FAIL and "read-only" in part.message
    assert not [c for c in checks if c.name in ("database", "code_list", "outbox")]


def test_doctor_and_ui_see_a_data_partition_that_did_not_mount(world, hq, tmp_path):
    """Defect 6: with nofail the Pi boots on when the data partition is missing; the
    doctor and the screen must say so instead of using the empty mount point."""
    from kiosk.doctor.data import data_partition

    boot = enrolled(world, hq)
    cfg_dir = world / "etc-kiosk"
    assert run_main(cli.main, ["provision", "apply", "--boot-file", boot / "kiosk.toml",
                               "--config-dir", cfg_dir, "--group", "root"]).rc == 0
    cfg = config.load(cfg_dir / "kiosk.toml")
    (world / "data").mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"LABEL=kiosk-data {world / 'data'} ext4 defaults,nofail 0 2\n")
    check = data_partition(cfg, fstab)
    assert check.status == FAIL and "LABEL=kiosk-data) is not mounted" in check.message
    fstab.write_text("# nothing for the data folder\n")
    assert data_partition(cfg, fstab).status == "OK"


def test_the_touch_screen_has_exactly_one_input_path(tmp_path):
    """Defect 4: one path for a touch screen: on KMS/DRM Kivy's probesysfs with mtdev
    (type B multitouch, as the Pi's displays report it; hidinput would read nothing of
    it) and no mouse events that SDL makes of touches; under X11 SDL's mouse events.
    The virtual Pi (step 3c) taps a uinput touch screen and counts each tap once."""
    code = ("import os; from kiosk.ui import kivyconf, runner; from kivy.config import Config; "
            "kivyconf.configure_kivy(home=runner.Path('" + str(tmp_path) + "')); "
            "Config.set('input', 'extra', 'mtdev'); runner.one_touch_path(); "
            "print(dict(Config.items('input')), os.environ.get('SDL_TOUCH_MOUSE_EVENTS'))")
    mouse = "'mouse': 'mouse,disable_multitouch'"
    for driver, inputs, touch_mouse in (
            ("kmsdrm", "{" + mouse + ", '%(name)s': 'probesysfs,provider=mtdev'}", "0"),
            ("x11", "{" + mouse + "}", "None")):  # X turns touches into SDL's mouse events
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "PYTHONPATH": str(REPO),
                                               "KIVY_HOME": str(tmp_path), "SDL_VIDEODRIVER": driver})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().rsplit(" ", 1) == [inputs, touch_mouse], driver
    assert "one_touch_path()" in (REPO / "kiosk/ui/runner.py").read_text()
