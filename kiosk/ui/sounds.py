"""Sounds from the kiosk's own speaker (HDMI or the audio jack), through Kivy's audio.

Three short, distinct sounds, in addition to the GPIO buzzer's patterns: a rising
two-note chime for "ready", a low double buzz for a refusal or an error, and a
bright three-note arpeggio for "done". They are synthesised here (sine tones with
soft edges, 16-bit mono WAV, no downloads) and committed under
``kiosk/assets/sounds``; ``python -m kiosk.ui.sounds`` rewrites them and
``tests/test_ui_readable_flow.py`` fails when the committed files are stale.

:class:`Sounds` has the same ``show(kind)`` as :class:`kiosk.hardware.signals.Signals`,
so the controller drives both with one call (:class:`Together`). ``[ui] sound_volume``
(0..1) and ``[ui] mute`` set the level. A kiosk without a sound device stays silent
and says so in the log once; it never stops a redemption.
"""

import io
import logging
import math
import struct
import wave
from pathlib import Path

log = logging.getLogger(__name__)

SOUND_DIR = Path(__file__).resolve().parents[1] / "assets" / "sounds"
RATE = 22050

# name -> notes (frequency Hz, seconds); 0 Hz is a pause
TUNES = {
    "ready": [(660, 0.09), (0, 0.03), (990, 0.16)],
    "refused": [(220, 0.14), (0, 0.06), (196, 0.22)],
    "done": [(784, 0.08), (988, 0.08), (1319, 0.20)],
}
# signal kind (kiosk.ui.present.TONES) -> sound name
KIND_SOUND = {"ready": "ready", "redeemed": "done", "refused": "refused", "error": "refused"}


def synthesize(name: str) -> bytes:
    """The WAV bytes of one tune (deterministic: the same bytes on every machine)."""
    frames = bytearray()
    for freq, seconds in TUNES[name]:
        count = int(RATE * seconds)
        fade = max(1, int(RATE * 0.012))
        for i in range(count):
            if freq == 0:
                sample = 0.0
            else:
                edge = min(1.0, i / fade, (count - 1 - i) / fade)
                tone = math.sin(2 * math.pi * freq * i / RATE) + 0.25 * math.sin(4 * math.pi * freq * i / RATE)
                sample = 0.6 * edge * tone / 1.25
            frames += struct.pack("<h", int(round(sample * 32767)))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(frames))
    return out.getvalue()


def write_all(folder: Path = SOUND_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TUNES:
        path = folder / f"{name}.wav"
        path.write_bytes(synthesize(name))
        written.append(path)
    return written


class Sounds:
    """Plays the tune for a signal kind. Loading is lazy (first use), so a kiosk that
    is muted never opens the audio device."""

    def __init__(self, volume: float = 0.8, mute: bool = False, folder: Path = SOUND_DIR,
                 loader=None):
        self.volume, self.mute, self.folder = volume, mute, folder
        self._loader = loader
        self._sounds: dict = {}
        self.played: list[str] = []  # names played, newest last (tests, diagnostics)
        self.problem = ""

    def _sound(self, name: str):
        if name not in self._sounds and self.problem:
            return None  # no audio output: not tried again for every tune (SDL's audio
            # init on the main thread costs time at a verdict, and it was logged once)
        if name not in self._sounds:
            loader = self._loader
            if loader is None:
                from kivy.core.audio import SoundLoader

                loader = SoundLoader.load
            sound = None
            try:
                sound = loader(str(self.folder / f"{name}.wav"))
            except Exception as exc:  # no audio device, no SDL mixer
                self.problem = str(exc)
            if sound is not None and not getattr(sound, "length", 1):
                sound = None  # Kivy returns an empty sound when no audio device opened
            if sound is None and not self.problem:
                self.problem = "no audio output"
            if sound is None:
                log.warning("kiosk sound %s unavailable: %s", name, self.problem)
            self._sounds[name] = sound
        return self._sounds[name]

    def show(self, kind: str) -> None:
        name = KIND_SOUND.get(kind)
        if name is None or self.mute or self.volume <= 0:
            return
        sound = self._sound(name)
        if sound is None:
            return
        try:
            sound.volume = self.volume
            sound.stop()
            sound.play()
            self.played.append(name)
        except Exception as exc:
            log.warning("kiosk sound %s failed: %s", name, exc)


class Together:
    """The GPIO signals and the kiosk's sounds behind one ``show(kind)``; everything
    else (``describe``, ``wait_idle``, ``close`` ...) is the GPIO signals'."""

    def __init__(self, signals, sounds: Sounds):
        self.signals, self.sounds = signals, sounds

    def show(self, kind: str) -> None:
        try:
            self.sounds.show(kind)
        finally:
            if self.signals is not None:
                self.signals.show(kind)

    def __getattr__(self, name):
        if self.signals is None:
            raise AttributeError(name)
        return getattr(self.signals, name)


if __name__ == "__main__":
    for p in write_all():
        print(p)
