"""redeem-kiosk: offline-first counter kiosk for loyalty redeem codes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("redeem-kiosk")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
