"""The MQTT broker connection: settings (``mqtt://`` / ``mqtts://`` URL, TLS, credentials) and paho clients.

The device agent, the doctor, provisioning and the HQ tools build their paho-mqtt
2.x clients here:
callback API version 2, MQTT v5, TLS when the URL says ``mqtts://``.
"""

import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.errors import ConfigError
from kiosk.i18n import Msg

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    tls: bool
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive: int = 60

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_url(url: str) -> BrokerSettings:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``; user:password in it are allowed."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(Msg("broker URL {url} must look like mqtts://host:8883 or mqtt://host:1883", url=repr(url)))
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ConfigError(Msg("broker URL {url} has a bad port", url=repr(url))) from None
    return BrokerSettings(parts.hostname, port, parts.scheme == "mqtts",
                          username=parts.username, password=parts.password)


def read_password(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(Msg("cannot read MQTT password file {file}: {error}", file=path, error=exc)) from None


def from_section(section, default_username: str | None = None) -> BrokerSettings:
    """Settings from the device config's ``[mqtt]`` table (see docs/sync.md)."""
    settings = parse_url(section.get("broker"))
    password_file = section.path_value("password_file", None)
    for key in ("ca", "cert", "key"):
        path = section.path_value(key, None)
        if path is not None and not path.exists():
            raise section.error(key, Msg("file {file} does not exist", file=path))
    cert, key = section.path_value("cert", None), section.path_value("key", None)
    if bool(cert) != bool(key):
        raise section.error("cert" if key else "key", Msg("a client certificate needs both cert and key"))
    keepalive = section.get("keepalive", int, 60)
    if not 5 <= keepalive <= 3600:
        raise section.error("keepalive", Msg("must be between 5 and 3600 seconds"))
    return replace(
        settings, ca=section.path_value("ca", None), cert=cert, key=key, keepalive=keepalive,
        username=section.get("username", str, settings.username or default_username),
        password=read_password(password_file) if password_file else settings.password,
    )


def with_options(settings: BrokerSettings, *, ca=None, cert=None, key=None, username=None,
                 password_file=None) -> BrokerSettings:
    """Apply HQ command-line options over a parsed URL."""
    return replace(
        settings, ca=Path(ca) if ca else settings.ca, cert=Path(cert) if cert else settings.cert,
        key=Path(key) if key else settings.key, username=username or settings.username,
        password=read_password(password_file) if password_file else settings.password,
    )


def make_client(settings: BrokerSettings, client_id: str) -> mqtt.Client:
    """A configured (not yet connected) MQTT v5 client."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if settings.tls:
        client.tls_set(ca_certs=str(settings.ca) if settings.ca else None,
                       certfile=str(settings.cert) if settings.cert else None,
                       keyfile=str(settings.key) if settings.key else None,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    return client


def session_properties(expiry_s: int) -> Properties:
    """CONNECT properties asking the broker to keep our session (queued QoS 1) a while."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props
