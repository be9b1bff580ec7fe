"""Broker check: TCP, TLS and credentials, with the same settings kiosk-sync uses."""

import os
import ssl
import threading

from kiosk.doctor import FAIL, OK, WARN, Check
from kiosk.errors import ConfigError
from kiosk.i18n import _, say


def broker(ctx) -> Check:
    cfg = ctx.cfg
    if "mqtt" not in cfg.raw:
        return Check("broker", WARN, _("no [mqtt] section: this kiosk never syncs"),
                     _("re-provision with `kiosk-hq enroll --broker mqtts://...`"))
    from kiosk import connection
    try:
        settings = connection.from_section(cfg.section("mqtt"), default_username=cfg.device_id)
    except ConfigError as exc:
        return Check("broker", FAIL, say(exc), _("fix [mqtt] in the config or re-provision"))
    where = (_("{url} as {user}").format(url=settings.url, user=settings.username)
             if settings.username else f"{settings.url}")
    # Its own client id: connecting as kiosk-sync's id would push the agent off.
    client = connection.make_client(settings, f"doctor-{cfg.device_id}-{os.getpid()}")
    outcome = _connect(client, settings, ctx.options.broker_timeout_s)
    if outcome is None:
        text = (_("connected to {where} (TLS verified), credentials accepted") if settings.tls
                else _("connected to {where} (NO TLS), credentials accepted"))
        return Check("broker", OK, text.format(where=where))
    return Check("broker", FAIL, f"{where}: {outcome[0]}", outcome[1])


def _connect(client, settings, timeout: float) -> tuple[str, str] | None:
    """None when CONNACK says success, else (what happened, what to do)."""
    done, result = threading.Event(), {}

    def on_connect(_client, _userdata, _flags, reason_code, _properties=None):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except ssl.SSLCertVerificationError as exc:
        return (_("TLS certificate not trusted ({error})").format(error=exc.verify_message),
                _("the [mqtt] ca file must be the broker's CA; check the device clock too "
                  "(a clock in the past makes certificates look not yet valid)"))
    except ssl.SSLError as exc:
        return (_("TLS handshake failed ({error})").format(error=exc),
                _("is the port a TLS listener? (8883)"))
    except TimeoutError:
        return (_("no answer (timeout)"),
                _("check the network, firewall and the broker host name"))
    except OSError as exc:
        return (_("cannot reach it ({error})").format(error=exc.strerror or exc),
                _("check the network cable/Wi-Fi, DNS and that the broker runs"))
    client.loop_start()
    try:
        if not done.wait(timeout):
            return (_("no CONNACK within the timeout"),
                    _("the broker accepted TCP but did not answer MQTT"))
        rc = result["rc"]
        if rc.is_failure:
            return (_("connection refused: {reason}").format(reason=rc),
                    _("user name/password wrong or not in the broker's password file: "
                      "re-run `kiosk-hq enroll` and reload the broker"))
        return None
    finally:
        client.disconnect()
        client.loop_stop()
