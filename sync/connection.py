"""Moved to :mod:`kiosk.connection` (device code must not import ``sync``). This name stays
only for ``kiosk/provision.py``'s ``connection.parse_url`` until that line imports
``kiosk.connection``; nothing else may use it."""

from kiosk.connection import parse_url  # noqa: F401
