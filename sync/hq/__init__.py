"""HQ tools over MQTT: publish, collect, report, enroll, broker-user, remote; serve (web + API); demo."""

from sync.hq import collect, demo, enroll, publish, remote, report, serve


def register_all(sub) -> None:
    """Add the MQTT commands to ``kiosk-hq`` (called by :mod:`sync.hq_cli`)."""
    for module in (publish, collect, report, enroll, remote, serve, demo):
        module.register(sub)
