"""What the controller needs of the devices it is handed: small Protocols.

The kiosk passes :class:`kiosk.printing.PrintService` and the GPIO signals with the
kiosk's sounds (:class:`kiosk.ui.sounds.Together`); tests pass small fakes that
have the same methods. Either may be None: no printer, no LED/buzzer.
"""

from typing import Protocol, runtime_checkable


class PrintOutcome(Protocol):
    ok: bool
    state: str    # "printed", "queued", "no_printer"
    message: str  # what staff see when it did not print


@runtime_checkable
class Printer(Protocol):
    """Prints a redemption's receipt; what fails waits in a queue until retried."""

    def print_redemption(self, redemption_id: str, *, reprint: bool = False,
                         lang: str = "en") -> PrintOutcome: ...

    def retry_pending(self) -> list[PrintOutcome]: ...


@runtime_checkable
class Signals(Protocol):
    """The counter's feedback (LED, buzzer, sounds) for a kind: "ready", "redeemed",
    "refused", "error", "idle"."""

    def show(self, kind: str) -> None: ...
