"""The image customisation, run for real on a fresh Debian bookworm root filesystem.

mmdebstrap builds a minimal amd64 bookworm root (about 30 s), then
``image-build/customize.sh`` runs on it exactly as it runs on a mounted Raspberry Pi
OS image: apt packages, the ``kiosk`` user, the venv from this source tree (pip
reaches PyPI), units, drop-ins, enabled services, cleaning. The checks then look at
the result from outside and run ``kiosk --version`` inside it. Nothing is cached
between runs. Needs root (chroot) and network to the Debian archive and PyPI.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = os.environ.get("KIOSK_TEST_MIRROR", "http://deb.debian.org/debian")
GROUPS = {"video", "render", "input", "gpio", "lp", "dialout"}

pytestmark = pytest.mark.slow


def run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("building a root filesystem needs root (chroot); CI runs as root")
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is needed (scripts/system-deps.sh installs it)")
    root = tmp_path_factory.mktemp("kiosk-rootfs") / "root"
    run(["mmdebstrap", "--variant=minbase", "--mode=root", "--include=python3,python3-venv",
         "bookworm", str(root), MIRROR], timeout=300)
    log = run(["bash", str(REPO / "image-build/customize.sh"), str(root), str(REPO)], timeout=480)
    yield root, log.stdout
    shutil.rmtree(root, ignore_errors=True)


def test_kiosk_runs_inside_the_root(rootfs):
    root, _ = rootfs
    out = run(["chroot", str(root), "/opt/kiosk/venv/bin/kiosk", "--version"], timeout=60)
    from kiosk import __version__
    assert out.stdout.strip() == f"kiosk {__version__}"


def test_kiosk_user_has_the_hardware_groups(rootfs):
    root, _ = rootfs
    out = run(["chroot", str(root), "id", "-nG", "kiosk"], timeout=30)
    assert set(out.stdout.split()) >= GROUPS
    shell = run(["chroot", str(root), "getent", "passwd", "kiosk"], timeout=30).stdout
    assert shell.strip().endswith("/usr/sbin/nologin")


def test_venv_keeps_the_apt_numpy(rootfs):
    """DESIGN.md section 6: pip must never shadow apt's numpy (picamera2's ABI)."""
    root, _ = rootfs
    out = run(["chroot", str(root), "/opt/kiosk/venv/bin/python", "-c",
               "import numpy; print(numpy.__file__)"], timeout=60)
    assert out.stdout.startswith("/usr/lib/python3/dist-packages/numpy/")
    assert not list((root / "opt/kiosk/venv/lib").glob("python3*/site-packages/numpy"))


def test_units_and_drop_ins_are_placed_and_enabled(rootfs):
    root, _ = rootfs
    etc = root / "etc/systemd/system"
    for name in ("kiosk.service", "kiosk-sync.service", "kiosk-firstboot.service",
                 "kiosk-setup-qr.path"):
        assert (etc / name).read_bytes() == (REPO / "systemd" / name).read_bytes()
        link = etc / "multi-user.target.wants" / name
        assert link.is_symlink() and os.readlink(link) == f"/etc/systemd/system/{name}"
    assert (root / "etc/systemd/system.conf.d/kiosk-watchdog.conf").exists()
    assert (root / "etc/systemd/journald.conf.d/kiosk.conf").exists()
    for rules in (REPO / "systemd/udev").glob("*.rules"):
        assert (root / "etc/udev/rules.d" / rules.name).exists()


def test_units_verify_against_the_built_root(rootfs):
    root, _ = rootfs
    for name in ("kiosk.service", "kiosk-sync.service", "kiosk-firstboot.service",
                 "kiosk-setup-qr.service", "kiosk-setup-qr.path"):
        result = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                                 f"/etc/systemd/system/{name}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_data_and_config_dirs_and_a_clean_identity(rootfs):
    root, log = rootfs
    data = root / "var/lib/kiosk"
    uid = int(run(["chroot", str(root), "id", "-u", "kiosk"], timeout=30).stdout)
    assert data.stat().st_uid == uid and (data.stat().st_mode & 0o777) == 0o750
    assert (root / "etc/kiosk/kiosk.toml.example").exists()
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "var/lib/apt/lists").glob("*_Packages"))
    assert not (root / "usr/sbin/policy-rc.d").exists()
    assert not (root / "tmp/kiosk-src").exists()
    assert "python3-picamera2 not in this root's apt sources" in log
