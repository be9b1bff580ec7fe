"""Wi-Fi for a provisioned kiosk, written the way Raspberry Pi OS bookworm keeps it.

Bookworm manages networks with NetworkManager: one keyfile per connection in
``/etc/NetworkManager/system-connections/NAME.nmconnection`` (owner root, mode 0600,
or NetworkManager ignores it). The WLAN stays blocked until a regulatory country is
set; ``raspi-config nonint do_wifi_country XX`` on bookworm puts
``cfg80211.ieee80211_regdom=XX`` into ``/boot/firmware/cmdline.txt`` (replacing any
earlier one), runs ``iw reg set XX`` and unblocks the WLAN (``rfkill unblock wifi``
and the saved ``/var/lib/systemd/rfkill/*:wlan`` states). :func:`apply` does the same
file edits under a target root (so tests check the files without root) and, only on
the real root, the two runtime commands and a NetworkManager reload.
"""

import contextlib
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from kiosk.errors import ProvisionError
from kiosk.i18n import Msg

CONNECTION_ID = "kiosk-wifi"
CONNECTIONS = Path("etc/NetworkManager/system-connections")
CMDLINE = Path("boot/firmware/cmdline.txt")
RFKILL_STATE = Path("var/lib/systemd/rfkill")
NM_STATE = Path("var/lib/NetworkManager/NetworkManager.state")
REGDOM = "cfg80211.ieee80211_regdom="
ISO3166 = Path("/usr/share/zoneinfo/iso3166.tab")


@dataclass(frozen=True)
class Wifi:
    ssid: str
    psk: str
    country: str
    hidden: bool = False

    def check(self) -> "Wifi":
        """Self, or :class:`ProvisionError` naming what is wrong."""
        if not 1 <= len(self.ssid.encode()) <= 32 or any(ord(c) < 32 for c in self.ssid):
            raise ProvisionError("invalid", Msg("Wi-Fi name (SSID) must be 1-32 bytes, no control characters"))
        hex64 = len(self.psk) == 64 and all(c in "0123456789abcdefABCDEF" for c in self.psk)
        if not (hex64 or (8 <= len(self.psk) <= 63 and all(32 <= ord(c) < 127 for c in self.psk))):
            raise ProvisionError("invalid", Msg("Wi-Fi password must be 8-63 printable ASCII characters "
                                                "(WPA2/WPA3 personal)"))
        if not valid_country(self.country):
            raise ProvisionError("invalid", Msg("Wi-Fi country {country} is not an ISO 3166 two-letter code "
                                                "(e.g. UZ, KZ, RU)", country=repr(self.country)))
        return self


def valid_country(code: str) -> bool:
    if not re.fullmatch(r"[A-Z]{2}", code or ""):
        return False
    if ISO3166.is_file():
        return any(line.split("\t", 1)[0] == code for line in ISO3166.read_text().splitlines())
    return True


def _keyfile_value(text: str) -> str:
    """A GKeyFile string value (NetworkManager's keyfile format)."""
    out = text.replace("\\", "\\\\")
    return "\\s" + out[1:] if out.startswith(" ") else out


def keyfile(wifi: Wifi, uid: str | None = None) -> str:
    """The NetworkManager keyfile for a WPA-PSK network that joins by itself."""
    lines = [
        "[connection]", f"id={CONNECTION_ID}", f"uuid={uid or uuid.uuid4()}", "type=wifi",
        "autoconnect=true", "", "[wifi]", "mode=infrastructure",
        f"ssid={_keyfile_value(wifi.ssid)}", *(["hidden=true"] if wifi.hidden else []), "",
        "[wifi-security]", "key-mgmt=wpa-psk", f"psk={_keyfile_value(wifi.psk)}", "",
        "[ipv4]", "method=auto", "", "[ipv6]", "addr-gen-mode=default", "method=auto", "",
    ]
    return "\n".join(lines)


def _write_root_only(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def set_country_files(root: Path, country: str) -> list[Path]:
    """What ``do_wifi_country`` changes on disk: the cmdline regdom and the rfkill states."""
    changed = []
    cmdline = root / CMDLINE
    if cmdline.is_file():
        tokens = [t for t in cmdline.read_text().split() if not t.startswith(REGDOM)]
        cmdline.write_text(" ".join([*tokens, REGDOM + country]) + "\n")
        changed.append(cmdline)
    for state in sorted((root / RFKILL_STATE).glob("*:wlan")):
        state.write_text("0\n")
        changed.append(state)
    nm_state = root / NM_STATE
    if nm_state.is_file() and "WirelessEnabled=false" in nm_state.read_text():
        nm_state.write_text(nm_state.read_text().replace("WirelessEnabled=false",
                                                         "WirelessEnabled=true"))
        changed.append(nm_state)
    return changed


def _run(*cmd: str) -> None:
    if shutil.which(cmd[0]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(cmd, check=False, timeout=20, capture_output=True)


def apply(wifi: Wifi, root: Path = Path("/")) -> dict:
    """Write the connection and the country under ``root``; on ``/`` also bring it up."""
    wifi.check()
    root = Path(root)
    path = root / CONNECTIONS / f"{CONNECTION_ID}.nmconnection"
    _write_root_only(path, keyfile(wifi))
    changed = set_country_files(root, wifi.country)
    if root == Path("/"):
        _run("iw", "reg", "set", wifi.country)
        _run("rfkill", "unblock", "wifi")
        _run("nmcli", "connection", "reload")
        _run("nmcli", "--wait", "15", "connection", "up", CONNECTION_ID)
    return {"connection": str(path), "ssid": wifi.ssid, "country": wifi.country,
            "changed": [str(p) for p in changed]}
