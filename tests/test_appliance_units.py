"""systemd units, drop-ins, firmware fragments and build scripts of the appliance.

``systemd-analyze verify`` runs on the real unit files against a temporary root that
holds the host's own systemd units plus stand-in executables at the image paths
(/opt/kiosk/venv/bin/...), so verify checks syntax, references and executables
without the image. Any warning fails the test (verify exits 0 on ignored lines).
"""

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"
SERVICES = ["kiosk.service", "kiosk-sync.service", "kiosk-sync.path", "kiosk-firstboot.service",
            "kiosk-setup-qr.service", "kiosk-setup-qr.path", "kiosk-partuuid.service"]
HOST_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                   if (p / "sysinit.target").exists()), None)


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       allow_no_value=True)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


@pytest.fixture(scope="module")
def verify_root(tmp_path_factory):
    if shutil.which("systemd-analyze") is None or HOST_UNITS is None:
        pytest.fail("systemd-analyze and the host's units are needed (scripts/system-deps.sh)")
    root = tmp_path_factory.mktemp("unitroot")
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    bin_dir = root / "opt/kiosk/venv/bin"
    bin_dir.mkdir(parents=True)
    for exe in ("kiosk", "kiosk-sync"):
        (bin_dir / exe).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / exe).chmod(0o755)
    sbin = root / "usr/local/sbin"
    sbin.mkdir(parents=True)
    (sbin / "kiosk-fix-partuuid").write_text("#!/bin/sh\nexit 0\n")
    (sbin / "kiosk-fix-partuuid").chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def verify(root: Path, name: str, source: Path) -> subprocess.CompletedProcess:
    shutil.copy(source, root / "etc/systemd/system" / name)
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", f"/etc/systemd/system/{name}"],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", SERVICES)
def test_unit_verifies_cleanly(verify_root, name):
    result = verify(verify_root, name, UNITS / name)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_catches_a_broken_unit(verify_root, tmp_path):
    """The check above can fail: a typo in a unit produces a warning."""
    bad = tmp_path / "bad.service"
    bad.write_text((UNITS / "kiosk.service").read_text().replace("Type=notify", "Type=notifyy"))
    result = verify(verify_root, "bad.service", bad)
    assert "notifyy" in result.stderr


@pytest.mark.parametrize("name", ["kiosk.service", "kiosk-sync.service"])
def test_long_running_services_restart_in_a_sandbox(name):
    u = unit(name)
    svc = u["Service"]
    assert svc["Restart"] == "always"
    assert svc["User"] == "kiosk"
    assert svc["ProtectSystem"] == "strict" and svc["NoNewPrivileges"] == "yes"
    assert "/var/lib/kiosk" in svc["ReadWritePaths"]


@pytest.mark.parametrize("name, code", [("kiosk.service", "kiosk/ui"),
                                        ("kiosk-sync.service", "sync")])
def test_type_notify_exactly_when_the_program_notifies(name, code):
    """A notify unit whose program never sends READY=1 would be killed at every start;
    a program that pings under Type=exec would go unwatched."""
    svc = unit(name)["Service"]
    sources = " ".join(p.read_text() for p in (REPO / code).rglob("*.py"))
    notifies = "notify_ready" in sources and ".ping()" in sources
    assert (svc["Type"] == "notify") == notifies
    if notifies:
        assert int(svc["WatchdogSec"]) > 0 and svc["NotifyAccess"] == "main"
    else:
        assert "WatchdogSec" not in svc


def test_the_ui_is_watched():
    assert unit("kiosk.service")["Service"]["Type"] == "notify"


def test_ui_keeps_hardware_reachable():
    svc = unit("kiosk.service")["Service"]
    assert svc["ExecStart"] == "/opt/kiosk/venv/bin/kiosk ui"
    assert "SDL_VIDEODRIVER=kmsdrm" in (UNITS / "kiosk.service").read_text()
    # DRM, camera, GPIO and printer devices come from groups; none of these may be set.
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock"):
        assert key not in svc, f"{key} would hide the camera/DRM/GPIO devices"


def test_sync_never_blocks_boot_on_network_or_time():
    text = (UNITS / "kiosk-sync.service").read_text()
    for target in ("network-online.target", "time-sync.target"):
        assert not [line for line in text.splitlines()
                    if not line.startswith("#") and target in line]


def test_firstboot_runs_only_with_a_provisioning_file_and_before_the_kiosk():
    u = unit("kiosk-firstboot.service")
    text = (UNITS / "kiosk-firstboot.service").read_text()
    assert "ConditionPathExists=|/boot/firmware/kiosk.toml" in text
    assert "kiosk.service" in u["Unit"]["Before"] and "kiosk-sync.service" in u["Unit"]["Before"]
    assert u["Service"]["ExecStart"] == "/opt/kiosk/venv/bin/kiosk provision apply"
    assert u["Service"]["Type"] == "oneshot"


def test_hardware_watchdog_and_a_small_persistent_journal():
    wd = unit("system.conf.d/kiosk-watchdog.conf")["Manager"]
    assert wd["RuntimeWatchdogSec"] == "15s"  # the bcm2835 watchdog's ceiling
    journal = unit("journald.conf.d/kiosk.conf")["Journal"]
    assert journal["Storage"] == "persistent" and journal["SystemMaxUse"] == "32M"
    assert journal["RuntimeMaxUse"].endswith("M")  # when the data partition is missing
    assert "dtparam=watchdog=on" in (REPO / "firmware/config.txt").read_text().splitlines()


def test_firmware_fragments_are_documented_line_by_line():
    config = (REPO / "firmware/config.txt").read_text().splitlines()
    block = config[config.index("# BEGIN redeem-kiosk") + 1:config.index("# END redeem-kiosk")]
    settings = [line for line in block if line and not line.startswith("#") and line != "[all]"]
    for line in settings:
        before = block[block.index(line) - 1]
        assert before.startswith("#"), f"{line} has no comment above it"
    tokens = [t for t in (REPO / "firmware/cmdline.txt").read_text().splitlines()
              if t and not t.startswith("#")]
    assert {"quiet", "consoleblank=0", "logo.nologo", "vt.global_cursor_default=0"} <= set(tokens)
    doc = (REPO / "docs/appliance.md").read_text()
    for item in [s.split("=")[0] for s in settings] + [t.split("=")[0] for t in tokens]:
        assert item in doc, f"{item} is not explained in docs/appliance.md"


@pytest.mark.parametrize("script", ["image-build/customize.sh", "image-build/build-image.sh",
                                    "image-build/kiosk-fix-partuuid", "scripts/vpi/build.sh"])
def test_scripts_are_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is needed (scripts/system-deps.sh installs it)")
    result = subprocess.run(["shellcheck", "-x", str(REPO / script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_a_ui_that_keeps_failing_escalates_to_a_reboot():
    """Issue 12, defect 11: 5 failed starts in 10 minutes reboot the kiosk; a hung
    reboot is cut short by the hardware watchdog."""
    u = unit("kiosk.service")["Unit"]
    assert u["StartLimitAction"] == "reboot"
    assert int(u["StartLimitBurst"]) >= 3 and u["StartLimitIntervalSec"] != "0"
    assert unit("system.conf.d/kiosk-watchdog.conf")["Manager"]["RebootWatchdogSec"]


def test_sync_waits_for_provisioning_instead_of_restarting():
    """Issue 12, defect 2: unprovisioned, kiosk-sync is skipped by a condition (one
    clear journal line) and started by kiosk-sync.path once the config is installed;
    a config error (exit 2) is not restarted every 5 s."""
    u = unit("kiosk-sync.service")
    assert u["Unit"]["ConditionPathExists"] == "/etc/kiosk/kiosk.toml"
    assert u["Service"]["RestartPreventExitStatus"] == "2"
    from sync import agent_cli
    assert "2 for a configuration error" in agent_cli.__doc__
    path = unit("kiosk-sync.path")
    assert path["Path"]["PathChanged"] == "/etc/kiosk/kiosk.toml"  # not PathExists: no loop
    assert path["Path"]["Unit"] == "kiosk-sync.service"
    assert "kiosk-sync.path" in (REPO / "image-build/customize.sh").read_text()


def test_lgpio_gets_a_writable_working_directory():
    """Issue 12, defect 3: lgpio writes .lgd-nfy* files into its working directory."""
    svc = unit("kiosk.service")["Service"]
    # "-": a plain WorkingDirectory= implies RequiresMountsFor= (see the next test)
    assert svc["WorkingDirectory"] == "-/var/lib/kiosk"
    assert "LG_WD=/var/lib/kiosk" in (UNITS / "kiosk.service").read_text()
    assert "python3-lgpio" in (REPO / "image-build/customize.sh").read_text()


def test_a_damaged_data_partition_does_not_stop_the_boot():
    """Issue 12, defect 6: nofail in fstab, and the UI starts without the mount (it
    shows the fault) instead of failing its RequiresMountsFor dependency."""
    script = (REPO / "image-build/customize.sh").read_text()
    fstab_line = next(line for line in script.splitlines() if "/var/lib/kiosk  ext4" in line)
    assert "nofail" in fstab_line and "x-systemd.device-timeout=" in fstab_line
    ui = (UNITS / "kiosk.service").read_text().splitlines()
    assert "After=var-lib-kiosk.mount" in ui
    assert not [line for line in ui if line.startswith("RequiresMountsFor")]
    # systemd adds RequiresMountsFor= for StateDirectory= and for a WorkingDirectory=
    # without "-" (the virtual Pi's step 1 checks the loaded unit)
    assert not [line for line in ui if line.startswith("StateDirectory")]
    assert [line for line in ui if line.startswith("WorkingDirectory=-")]
    # the device wait counts from systemd's start: long enough for a slow boot
    timeout = re.search(r"x-systemd\.device-timeout=(\d+)s", fstab_line)
    assert timeout and int(timeout.group(1)) >= 60
