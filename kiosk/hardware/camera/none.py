"""``none``: no camera fitted. The UI offers manual entry only."""

from kiosk.hardware.camera.base import FrameSource


class NoCamera(FrameSource):
    """A source that is not available and ends at once."""

    available = False
    realtime = False

    def __init__(self):
        super().__init__("none")

    def _grab(self, timeout):
        return None
