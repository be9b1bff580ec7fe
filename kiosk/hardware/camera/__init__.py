"""Camera frame sources behind one small interface (DESIGN.md s6).

``open_source("picamera2" | "opencv:N" | "replay:PATH" | "none", settings)`` returns a
:class:`FrameSource`; each backend lives in its own module and is imported only when
used. ``replay`` and :mod:`kiosk.hardware.camera.synthetic` are the shipped fakes.
"""

from kiosk.hardware.camera.base import (
    SPEC_FORMS,
    Frame,
    FrameSource,
    open_source,
    settings_from_section,
)

__all__ = ["SPEC_FORMS", "Frame", "FrameSource", "open_source", "settings_from_section"]
