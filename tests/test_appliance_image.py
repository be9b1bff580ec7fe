"""The image build, run for real on a fresh Debian bookworm root filesystem.

mmdebstrap builds a minimal amd64 bookworm root (about 30 s). It is packed into a
disk image laid out like Raspberry Pi OS Lite (partition 1 boot with config.txt and
cmdline.txt, partition 2 root) and ``image-build/build-image.sh`` turns that into a
kiosk image exactly as it does the real one: grow root, add the data partition,
loop-mount, run ``customize.sh`` (apt packages, the ``kiosk`` user, the venv from
this source tree with pip reaching PyPI, units, drop-ins, firmware fragments,
enabled services, cleaning). The checks then mount the result and look at it from
outside, and run ``kiosk --version`` inside it. The only differences from a Pi
build: amd64 instead of arm64 (no qemu needed), an ext4 boot partition (this kernel
may lack vfat) and no python3-picamera2 (not in Debian). Where loop devices are not
available, customize.sh runs on the directory and the image-only checks skip.
Nothing is cached between runs. Needs root and the Debian archive and PyPI.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKioskMaintenanceKeyForTestsOnly00000000000 tech@laptop"
MIRROR = os.environ.get("KIOSK_TEST_MIRROR", "http://deb.debian.org/debian")
GROUPS = {"video", "render", "input", "gpio", "lp", "dialout", "audio", "systemd-journal"}
UNITS = ("kiosk.service", "kiosk-sync.service", "kiosk-sync.path", "kiosk-firstboot.service",
         "kiosk-setup-qr.service", "kiosk-setup-qr.path", "kiosk-partuuid.service")
ENABLED = ("kiosk.service", "kiosk-sync.service", "kiosk-sync.path", "kiosk-firstboot.service",
           "kiosk-setup-qr.path")
STOCK_CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 "
                 "rootfstype=ext4 fsck.repair=yes rootwait "
                 "init=/usr/lib/raspberrypi-sys-mods/firstboot")
SECTOR, BOOT_START, BOOT_SECTORS, ROOT_START = 512, 8192, 131072, 139264

pytestmark = pytest.mark.slow


def run(cmd: list, timeout: float, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                            timeout=timeout, **kw)
    assert result.returncode == 0, f"{cmd[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def loop_devices_work(tmp: Path) -> bool:
    probe = tmp / "probe.img"
    probe.write_bytes(b"\0" * 1024 * 1024)
    attach = subprocess.run(["losetup", "--show", "-f", str(probe)], capture_output=True, text=True)
    if attach.returncode != 0:
        return False
    subprocess.run(["losetup", "-d", attach.stdout.strip()], check=False)
    return True


def pi_like_image(rootdir: Path, work: Path) -> Path:
    """A disk image with Raspberry Pi OS Lite's layout holding ``rootdir``."""
    (rootdir / "boot/firmware").mkdir(parents=True, exist_ok=True)
    boot = work / "bootfs"
    boot.mkdir()
    (boot / "config.txt").write_text("[all]\ndtoverlay=vc4-kms-v3d\n")
    (boot / "cmdline.txt").write_text(STOCK_CMDLINE + "\n")
    image = work / "raspios-like.img"
    total = 700 * 1024 * 1024 // SECTOR
    with open(image, "wb") as fh:
        fh.truncate(total * SECTOR)
    # the disk identifier Raspberry Pi OS images carry, as named in their cmdline.txt
    table = (f"label: dos\nlabel-id: 0x4e639091\nstart={BOOT_START},size={BOOT_SECTORS},type=c\n"
             f"start={ROOT_START},type=83\n")
    run(["sfdisk", "-q", image], 60, input=table)
    run(["mkfs.ext4", "-q", "-L", "bootfs", "-d", boot, "-E", f"offset={BOOT_START * SECTOR}",
         image, f"{BOOT_SECTORS // 2}k"], 120)
    run(["mkfs.ext4", "-q", "-L", "rootfs", "-d", rootdir, "-E", f"offset={ROOT_START * SECTOR}",
         image, f"{(total - ROOT_START) // 2}k"], 300)
    return image


class Mounted:
    """The partitions of an image attached read-write by offset and mounted."""

    def __init__(self, image: Path, mnt: Path):
        self.loops, self.mounts, self.mnt = [], [], mnt
        table = json.loads(run(["sfdisk", "-J", image], 30).stdout)["partitiontable"]
        self.parts = table["partitions"]
        self.devs = [self._attach(image, p) for p in self.parts]

    def _attach(self, image, part) -> str:
        dev = run(["losetup", "--show", "-f", "-o", part["start"] * SECTOR,
                   "--sizelimit", part["size"] * SECTOR, image], 30).stdout.strip()
        self.loops.append(dev)
        return dev

    def mount(self, dev: str, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        run(["mount", dev, where], 30)
        self.mounts.insert(0, where)

    def close(self) -> None:
        for m in self.mounts:
            subprocess.run(["umount", "-l", str(m)], check=False)
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("building a root filesystem needs root (chroot); CI runs as root")
    for tool in ("mmdebstrap", "sfdisk", "mkfs.ext4"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed (scripts/system-deps.sh installs it)")
    work = tmp_path_factory.mktemp("kiosk-image")
    rootdir = work / "root"
    run(["mmdebstrap", "--variant=minbase", "--mode=root", "--include=python3,python3-venv",
         "bookworm", rootdir, MIRROR], 300)
    if not loop_devices_work(work):
        log = run(["bash", REPO / "image-build/customize.sh", rootdir, REPO], 480).stdout
        yield {"root": rootdir, "log": log, "image": None}
        shutil.rmtree(work, ignore_errors=True)
        return
    image = pi_like_image(rootdir, work)
    shutil.rmtree(rootdir)
    out = work / "kiosk.img"
    env = {**os.environ, "ROOT_GROW_MB": "768", "DATA_MB": "64", "KIOSK_SSH_KEY": SSH_KEY}
    log = run(["bash", REPO / "image-build/build-image.sh", image, out, REPO], 600, env=env).stdout
    mounted = Mounted(out, work / "mnt")
    try:
        mounted.mount(mounted.devs[1], mounted.mnt)
        mounted.mount(mounted.devs[0], mounted.mnt / "boot/firmware")
        yield {"root": mounted.mnt, "log": log, "image": mounted}
    finally:
        mounted.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def image(built):
    if built["image"] is None:
        pytest.skip("no loop devices here: customize.sh ran on the directory instead")
    return built["image"]


def test_kiosk_runs_inside_the_root(built):
    out = run(["chroot", built["root"], "/opt/kiosk/venv/bin/kiosk", "--version"], 60)
    from kiosk import __version__
    assert out.stdout.strip() == f"kiosk {__version__}"


def test_kiosk_user_has_the_hardware_groups(built):
    out = run(["chroot", built["root"], "id", "-nG", "kiosk"], 30)
    assert set(out.stdout.split()) >= GROUPS
    entry = run(["chroot", built["root"], "getent", "passwd", "kiosk"], 30).stdout
    assert entry.strip().endswith("/usr/sbin/nologin")


def test_venv_keeps_the_apt_numpy(built):
    """DESIGN.md section 6: pip must never shadow apt's numpy (picamera2's ABI)."""
    out = run(["chroot", built["root"], "/opt/kiosk/venv/bin/python", "-c",
               "import numpy; print(numpy.__file__)"], 60)
    assert out.stdout.startswith("/usr/lib/python3/dist-packages/numpy/")
    assert not list((built["root"] / "opt/kiosk/venv/lib").glob("python3*/site-packages/numpy"))


def test_venv_has_exactly_the_pinned_versions(built):
    """Every kiosk gets the same versions: customize.sh installs under
    image-build/constraints.txt, so each package pip put into the venv is pinned there
    and has that version (pip and setuptools come with the venv, not from pip)."""
    pins = dict(line.split("==") for line in
                (REPO / "image-build/constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pins = {re.sub(r"[-_.]+", "-", k).lower(): v.strip() for k, v in pins.items()}
    site = next((built["root"] / "opt/kiosk/venv/lib").glob("python3*/site-packages"))
    installed = {}
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    installed = {k: v for k, v in installed.items()
                 if k not in ("pip", "setuptools", "redeem-kiosk")}
    assert {"kivy", "paho-mqtt", "cryptography", "zxing-cpp"} <= set(installed)
    assert {k: v for k, v in installed.items() if pins.get(k) != v} == {}, pins


def test_units_and_drop_ins_are_placed_and_enabled(built):
    etc = built["root"] / "etc/systemd/system"
    for name in UNITS:
        assert (etc / name).read_bytes() == (REPO / "systemd" / name).read_bytes()
    for name in ENABLED:
        link = etc / "multi-user.target.wants" / name
        assert link.is_symlink() and os.readlink(link) == f"/etc/systemd/system/{name}"
    assert (built["root"] / "etc/systemd/system.conf.d/kiosk-watchdog.conf").exists()
    assert (built["root"] / "etc/systemd/journald.conf.d/kiosk.conf").exists()
    for rules in (REPO / "systemd/udev").glob("*.rules"):
        assert (built["root"] / "etc/udev/rules.d" / rules.name).exists()


def test_units_verify_against_the_built_root(built):
    for name in UNITS:
        result = subprocess.run(["systemd-analyze", "verify", f"--root={built['root']}",
                                 f"/etc/systemd/system/{name}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_config_dir_and_a_clean_identity(built):
    root = built["root"]
    assert (root / "etc/kiosk/kiosk.toml.example").exists()
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "var/lib/apt/lists").glob("*_Packages"))
    assert not (root / "usr/sbin/policy-rc.d").exists()
    assert not (root / "tmp/kiosk-src").exists() and not (root / "tmp/kiosk-build-ca.pem").exists()
    assert "python3-picamera2 not in this root's apt sources" in built["log"]


def test_boot_partition_gets_the_firmware_fragments(built, image):
    boot = built["root"] / "boot/firmware"
    config = (boot / "config.txt").read_text()
    assert config.startswith("[all]\ndtoverlay=vc4-kms-v3d\n")  # the stock file stays first
    assert "dtparam=watchdog=on" in config.splitlines() and config.count("# BEGIN redeem-kiosk") == 1
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline.count("\n") == 1  # still one line
    tokens = cmdline.split()
    assert "root=PARTUUID=4e639091-02" in tokens and "quiet" in tokens and "consoleblank=0" in tokens
    assert not any(t.startswith("init=") for t in tokens)  # no first-boot resize


def test_data_partition_is_journalled_and_mounted_on_var_lib_kiosk(built, image):
    assert len(image.parts) == 3
    root_end = image.parts[1]["start"] + image.parts[1]["size"]
    assert image.parts[2]["start"] >= root_end and image.parts[2]["size"] == 64 * 2048
    info = run(["dumpe2fs", "-h", image.devs[2]], 30).stdout
    assert "kiosk-data" in info and "journal_data" in info
    fstab = (built["root"] / "etc/fstab").read_text()
    # by the image's own disk id (kiosk-fix-partuuid makes it unique per card at first boot)
    assert re.search(r"^PARTUUID=[0-9a-f]{8}-03  /var/lib/kiosk  ext4  defaults,noatime,"
                     r"data=journal", fstab, re.M), fstab
    assert "nofail" in fstab
    image.mount(image.devs[2], built["root"] / "var/lib/kiosk")
    uid = int(run(["chroot", built["root"], "id", "-u", "kiosk"], 30).stdout)
    data = (built["root"] / "var/lib/kiosk").stat()
    assert data.st_uid == uid and (data.st_mode & 0o777) == 0o750


def test_maintenance_login_is_the_given_key_only_and_the_journal_persists(built, image):
    root = built["root"]
    assert (root / "home/maint/.ssh/authorized_keys").read_text().strip() == SSH_KEY
    assert oct((root / "home/maint/.ssh/authorized_keys").stat().st_mode & 0o777) == "0o600"
    shadow = [line for line in (root / "etc/shadow").read_text().splitlines()
              if line.startswith("maint:")][0]
    assert shadow.split(":")[1].startswith("!")  # password locked: the key is the way in
    assert set(run(["chroot", root, "id", "-nG", "maint"], 30).stdout.split()) >= {"sudo", "kiosk"}
    sshd = (root / "etc/ssh/sshd_config.d/10-kiosk.conf").read_text().splitlines()
    assert "PasswordAuthentication no" in sshd and "AllowUsers maint" in sshd
    fstab = (root / "etc/fstab").read_text()
    assert "/var/lib/kiosk/journal  /var/log/journal  none  bind,nofail" in fstab
    data = root / "var/lib/kiosk"
    if not os.path.ismount(data):  # the data partition test may have mounted it already
        image.mount(image.devs[2], data)
    journal = (data / "journal").stat()
    assert journal.st_mode & 0o2000  # setgid systemd-journal, as journald wants
