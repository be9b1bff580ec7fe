"""Shared pieces of the HQ MQTT commands: broker options and a blocking connect."""

import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from kiosk import connection
from kiosk.errors import KioskError


class HqError(KioskError, RuntimeError):
    """An HQ tool could not do its job (broker unreachable, refused, bad input)."""


def add_broker_args(parser, required: bool = True) -> None:
    parser.add_argument("--broker", required=required, metavar="URL",
                        help="mqtts://host:8883 (TLS) or mqtt://host:1883")
    parser.add_argument("--ca", type=Path, help="CA certificate that signed the broker's")
    parser.add_argument("--cert", type=Path, help="client certificate (if the broker wants one)")
    parser.add_argument("--key", type=Path, help="client certificate's private key")
    parser.add_argument("--username", help="broker user (default: from the URL)")
    parser.add_argument("--password-file", type=Path, help="file holding the broker password")


def settings_from_args(args) -> connection.BrokerSettings:
    return connection.with_options(
        connection.parse_url(args.broker), ca=args.ca, cert=args.cert, key=args.key,
        username=args.username, password_file=args.password_file)


def connect(settings: connection.BrokerSettings, client_id: str, timeout: float = 15.0,
            client: mqtt.Client | None = None) -> mqtt.Client:
    """Connect and start the network thread, or raise :class:`HqError` with the reason."""
    client = client or connection.make_client(settings, client_id)
    result: dict = {}
    done = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    previous = client.on_connect
    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, settings.keepalive)
    except (OSError, ValueError) as exc:
        raise HqError(f"cannot connect to {settings.url}: {exc}") from None
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        raise HqError(f"no answer from the broker at {settings.url} within {timeout:.0f} s")
    if result["rc"].is_failure:
        client.loop_stop()
        raise HqError(f"broker {settings.url} refused the connection: {result['rc']}")
    client.on_connect = previous
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def loop_running(client: mqtt.Client) -> bool:
    """True while the network thread of :func:`connect` (paho's ``loop_start``) lives.
    paho offers no public call for this; its ``_thread`` has been there since 1.x."""
    thread = getattr(client, "_thread", None)
    return thread is not None and thread.is_alive()
