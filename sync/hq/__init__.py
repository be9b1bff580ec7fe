"""HQ reference tools over MQTT: publish, collect, report, enroll, broker-user."""

from sync.hq import collect, enroll, publish, report


def register_all(sub) -> None:
    """Add the MQTT commands to ``kiosk-hq`` (called by :mod:`sync.hq_cli`)."""
    for module in (publish, collect, report, enroll):
        module.register(sub)
