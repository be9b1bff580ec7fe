"""QR decoding of grayscale frames: zxing-cpp, pyzbar, chains, and the ``auto`` plan.

Decoding is QR-only (DESIGN.md s4): 1D barcodes and camera noise must never become
phantom codes. Both backends read light-on-dark (dark mode) codes: zxing-cpp with
``try_invert``, pyzbar by decoding the inverted image when the plain one has nothing.

``make_decoder("auto")`` is :class:`ScanPlan`, chosen from the measurements in
docs/scanning.md: zxing-cpp on the lores frame first; where it locates a QR symbol
but cannot read it, crops of the full-resolution frame tried with more backends and
pre-processing passes (:mod:`kiosk.hardware.enhance`), within a per-frame time
budget and in rotation across frames. Payload text: zxing-cpp's plain text (it
applies the code's ECI or guesses the character set); pyzbar's bytes as UTF-8, or
latin-1 when not UTF-8, with zbar's Shift_JIS misreading of UTF-8 text undone.
"""

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kiosk.errors import ConfigError, HardwareError
from kiosk.hardware import enhance
from kiosk.hardware.enhance import half_size
from kiosk.i18n import Msg

NAMES = ("auto", "zxing", "zxing-global", "pyzbar", "pyzbar-fast")
AUTO_FALLBACK = ("pyzbar-fast",)  # auto without zxing-cpp
FAST_MAX_SIDE = 480


@dataclass(frozen=True)
class Decoded:
    """One QR code found in a frame: its text and the backend that read it."""

    text: str
    decoder: str


def bytes_to_text(data: bytes) -> str:
    """UTF-8 when the bytes are UTF-8, else latin-1 (every byte kept as one char)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def undo_shift_jis_guess(text: str) -> str:
    """zbar guesses a byte-mode payload's character set and reads UTF-8 text (Chinese,
    say) as Shift_JIS: the text comes back as Japanese-looking mojibake, a wrong
    payload (and another text than zxing-cpp's for the same code). When the text,
    encoded back to Shift_JIS, is valid UTF-8 with non-ASCII bytes, that was the
    payload (real Shift_JIS text almost never is valid UTF-8; zxing-cpp guesses alike)."""
    if text.isascii():
        return text
    try:
        return text.encode("shift_jis").decode("utf-8")
    except UnicodeError:
        return text


def _unique(found: list[Decoded]) -> list[Decoded]:
    seen, result = set(), []
    for item in found:
        if item.text not in seen:
            seen.add(item.text)
            result.append(item)
    return result


class Decoder:
    """Finds QR codes in a 2-D uint8 grayscale image."""

    name = "decoder"

    def decode(self, gray: np.ndarray) -> list[Decoded]:
        raise NotImplementedError

    def labels(self) -> list[str]:
        """Every ``Decoded.decoder`` this decoder can report (``kiosk scan`` sizes its
        decoder column to the longest)."""
        return [self.name]

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class ZxingDecoder(Decoder):
    """zxing-cpp restricted to QR symbols; tries inverted codes too."""

    def __init__(self, binarizer: str = "local"):
        try:
            import zxingcpp
        except ImportError as exc:
            raise HardwareError(Msg("zxing-cpp is not installed ({error}): pip install zxing-cpp", error=exc)) from None
        self._zx = zxingcpp
        self.name = "zxing" if binarizer == "local" else "zxing-global"
        self._options = {"formats": zxingcpp.BarcodeFormat.QRCode, "try_invert": True}
        # As a filter, zxing-cpp 3's "QRCode" includes Micro QR and rMQR: their tiny
        # symbols turn up inside a real code's modules (a phantom "25" in a photo of three
        # codes) and no wallet shows them. Only a result whose format is QRCode is a read
        # (the located-but-unread ones of every kind still say where to look closer).
        self._qr = zxingcpp.BarcodeFormat.QRCode
        if hasattr(zxingcpp, "TextMode"):
            self._options["text_mode"] = zxingcpp.TextMode.Plain
        if binarizer != "local":
            self._options["binarizer"] = zxingcpp.Binarizer.GlobalHistogram

    def _read(self, b) -> bool:
        return b.valid and b.format == self._qr

    def decode(self, gray):
        found = self._zx.read_barcodes(gray, **self._options)
        return _unique([Decoded(b.text, self.name) for b in found if self._read(b)])

    def decode_with_candidates(self, gray) -> tuple[list[Decoded], list[tuple[float, float, float, float]]]:
        """The codes read, and the boxes ``(x0, y0, x1, y1)`` of QR symbols that were
        located (finder patterns found) but could not be read: where to look closer."""
        found = self._zx.read_barcodes(gray, return_errors=True, **self._options)
        codes = _unique([Decoded(b.text, self.name) for b in found if self._read(b)])
        boxes = []
        for b in found:
            if b.valid:
                continue
            p = b.position
            xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
            ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
            if max(xs) - min(xs) >= 8 and max(ys) - min(ys) >= 8:
                boxes.append((min(xs), min(ys), max(xs), max(ys)))
        return codes, boxes


class PyzbarDecoder(Decoder):
    """pyzbar (libzbar) restricted to QR symbols; ``invert`` retries on the negative.

    ``max_side``: frames larger than this are decoded at half size. zbar's cost grows
    fast with area and sensor noise (about 10-40 ms for a code-less 640x480 frame
    here, 2 ms at 320x240), and a phone's code under the kiosk camera is large.
    """

    def __init__(self, invert: bool = True, max_side: int | None = None):
        try:
            from pyzbar import pyzbar
        except ImportError as exc:
            raise HardwareError(Msg("pyzbar cannot load libzbar ({error}): on Debian/Raspberry Pi OS "
                                    "run 'sudo apt install libzbar0'", error=exc)) from None
        self._decode = pyzbar.decode
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]
        self.invert, self.max_side = invert, max_side
        self.name = "pyzbar-fast" if max_side else "pyzbar"

    def _read(self, gray):
        results = self._decode(gray, symbols=self._symbols)
        return [Decoded(undo_shift_jis_guess(bytes_to_text(r.data)), self.name) for r in results]

    def decode(self, gray):
        if self.max_side and max(gray.shape) > self.max_side:
            gray = half_size(gray)
        found = self._read(gray)
        if not found and self.invert:
            found = self._read(np.invert(gray))
        return _unique(found)


class ChainDecoder(Decoder):
    """Runs decoders in order and returns the first non-empty result.

    ``decode(gray, stop=callable)``: before each fallback stage ``stop()`` is asked
    whether to give up on this frame; the scanner passes "a newer frame is waiting",
    so on a busy CPU the slow fallbacks never delay the fast first pass on the
    newest frame (on a frame with a code the first pass nearly always succeeds).
    """

    accepts_stop = True

    def __init__(self, decoders: list[Decoder], name: str = "auto"):
        if not decoders:
            raise HardwareError(Msg("no QR decoder is available (install zxing-cpp or libzbar0)"))
        self.decoders, self.name = decoders, name

    def labels(self):
        return [label for d in self.decoders for label in d.labels()]

    def decode(self, gray, stop=None):
        for i, decoder in enumerate(self.decoders):
            if i and stop is not None and stop():
                return []
            found = decoder.decode(gray)
            if found:
                return found
        return []


# --- the "auto" plan: lores first, then closer looks within a per-frame time budget ------

DEFAULT_BUDGET_MS = 11.0   # a frame's decode never starts a pass that would overrun this
IDLE_BUDGET_MS = 5.0       # ... and this when the frame shows no sign of a code
REGION_TTL = 15            # frames a located-but-unread code is remembered (0.5 s at 30 fps)
MAX_REGIONS = 2            # regions looked at per frame
REMEMBERED_REGIONS = 4     # regions kept; those looked at go to the back, so all get turns


class Step:
    """One decode attempt: ``backend`` on the image, after ``prep`` when given.

    Its cost is estimated from its last ``COST_WINDOW`` runs on this machine: the
    slowest of them, scaled up by the image's size ratio when the image is larger
    (small crops cost more per pixel, so scaling down would underestimate). It
    starts from a prior of ``prior_ms`` for an image of ``prior_px`` pixels.
    """

    COST_WINDOW = 8

    def __init__(self, name: str, backend: Decoder, prep=None, prior_ms: float = 3.0,
                 prior_px: int = 640 * 480):
        self.name, self.backend, self.prep = name, backend, prep
        self.costs = deque([(prior_ms, prior_px)], maxlen=self.COST_WINDOW)
        self.kept_out = 0  # frames the estimate kept the step out since it last ran

    def estimate_ms(self, pixels: int) -> float:
        return max(ms * max(1.0, pixels / max(px, 1)) for ms, px in self.costs)

    def learn(self, ms: float, pixels: int) -> None:
        self.costs.append((ms, pixels))
        self.kept_out = 0

    def forget_spike(self) -> None:
        """Called when the estimate kept the step out. A slow run (the machine was
        busy) is dropped once it has kept the step out ``COST_WINDOW`` times since the
        step last ran, when it is over twice the median: a normally affordable step is
        not kept out for long, and a scene that really costs more (camera noise) does
        not make the step overrun again on the very next frame."""
        self.kept_out += 1
        if self.kept_out < self.COST_WINDOW or len(self.costs) <= 2:
            return
        self.kept_out = 0
        ordered = sorted(ms for ms, _ in self.costs)
        worst = max(self.costs, key=lambda c: c[0])
        if worst[0] > 2 * ordered[len(ordered) // 2]:
            self.costs.remove(worst)

    def run(self, image) -> list[Decoded]:
        if self.prep is not None:
            image = self.prep(image)
        return self.backend.decode(image)


@dataclass(eq=False)  # a region is one place being looked at: found and removed by identity
class Region:
    """Where a code was located but not read, as fractions of the frame (x0, y0, x1, y1).

    ``turn`` is the next crop step to try there: consecutive frames try different
    steps on the same code instead of repeating the one that just failed."""

    box: tuple[float, float, float, float]
    ttl: int = REGION_TTL
    turn: int = 0

    def overlaps(self, box) -> bool:
        ax0, ay0, ax1, ay1 = self.box
        bx0, by0, bx1, by1 = box
        ix = max(0.0, min(ax1, bx1) - max(ax0, bx0))
        iy = max(0.0, min(ay1, by1) - max(ay0, by0))
        inter = ix * iy
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        return union > 0 and inter / union > 0.2


@dataclass
class FrameReport:
    """What the plan did on the last frame: the steps run (name, ms, codes) and time used."""

    steps: list = field(default_factory=list)
    used_ms: float = 0.0
    budget_ms: float = 0.0
    regions: int = 0
    left_out: int = 0  # steps that did not fit in the budget


class ScanPlan(Decoder):
    """The ``auto`` decoder: cheap first, closer looks only where they can pay.

    1. zxing-cpp on the frame the kiosk streams (640x480 lores). It returns the
       codes read and the places where a QR symbol was located but not read.
    2. Each such place (and places remembered from the last ``REGION_TTL``
       frames) is cropped from the full-resolution frame (``full``, when the
       camera gives one; else the frame itself) and tried with ``crop_steps``
       (zxing-cpp and zbar, at the crop's size and at half size, the global
       binarizer, the whole full frame, the crop stretched for a tilted phone
       (``tilt_steps``), then local contrast, sharpen and equalize before zxing-cpp).
    3. A frame with no code and no located symbol gets ``wide_steps`` on the lores
       frame (zbar at half size in each polarity, local contrast, the global
       binarizer, stretched both ways), and the whole full frame when its cost fits.

    Every step after the first runs only when its estimated cost fits in what is
    left of the frame's budget (``budget_ms``; ``idle_budget_ms`` on a frame with no
    sign of a code), and the steps rotate across frames: what did not fit or did
    not read on one frame is tried first on the next, so a code held for a few
    frames gets every step. ``stop()`` (a newer frame is waiting) ends the frame.
    """

    accepts_stop = True
    accepts_full = True

    def __init__(self, *, budget_ms: float = DEFAULT_BUDGET_MS, idle_budget_ms: float = IDLE_BUDGET_MS,
                 clock=time.thread_time, name: str = "auto"):
        self.name, self.clock = name, clock
        self.budget_ms, self.idle_budget_ms = float(budget_ms), float(min(idle_budget_ms, budget_ms))
        self.first = ZxingDecoder("local")
        zx_global = ZxingDecoder("global")
        try:
            zbar = PyzbarDecoder()
            zbar_fast = PyzbarDecoder(invert=False, max_side=FAST_MAX_SIDE)  # one polarity a pass
        except HardwareError:
            zbar = zbar_fast = None
        crop_px = 320 * 320  # priors for a typical crop around a phone's code
        # The whole full-resolution frame: a closer look at every located code at once,
        # plain, with local contrast (glare, a dim or washed-out code), equalized before
        # the global binarizer (dark frames, low contrast) and darkened (glare).
        full_px = 1280 * 960
        self.full_step = Step("zxing", self.first, None, 6.0, full_px)
        self.full_steps = [self.full_step,
                           Step("zxing+contrast", self.first, enhance.local_contrast, 3.5, full_px),
                           Step("zxing-global+equalize", zx_global, enhance.equalize, 4.0, full_px),
                           Step("zxing+darken", self.first, enhance.darken, 4.0, full_px)]
        # Equalized, then the global binarizer, on the whole lores frame: cheap, and the
        # lores frame's 2x2 average has none of the full frame's moire on a phone screen.
        self.lores_step = Step("zxing-global+equalize", zx_global, enhance.equalize, 1.2)
        # A strongly tilted phone: its finder patterns are too far from square to be
        # matched until the image is stretched back across (widen) or along (heighten);
        # on a located code's crop, and on the whole lores frame when nothing is located
        crop_tilt = [Step("zxing+widen", self.first, enhance.widen, 1.0, crop_px),
                     Step("zxing+heighten", self.first, enhance.heighten, 1.0, crop_px)]
        lores_tilt = [Step("zxing+widen", self.first, enhance.widen, 3.0),
                      Step("zxing+heighten", self.first, enhance.heighten, 3.0)]
        self.tilt_steps = crop_tilt + lores_tilt  # (widen, heighten) on a crop, then on lores
        # The crop steps in the order measured to pay (bench/scan.py): the cheap ones, the
        # whole lores and full frames (a symbol located on the lores frame may be read
        # there once normalised), then the costlier passes on the crop.
        crop = [Step("zxing", self.first, None, 0.6, crop_px),
                Step("zxing+half", self.first, enhance.half_size, 0.3, crop_px),
                Step("zxing-global", zx_global, None, 0.3, crop_px),
                self.lores_step, self.full_step, self.full_steps[1], *crop_tilt]
        crop += [Step("pyzbar+half", zbar, enhance.half_size, 1.0, crop_px)] if zbar else []
        crop += [Step("zxing+contrast", self.first, enhance.local_contrast, 1.5, crop_px),
                 Step("zxing+equalize", self.first, enhance.equalize, 0.8, crop_px),
                 Step("zxing-global+equalize", zx_global, enhance.equalize, 0.5, crop_px)]
        crop += [Step("pyzbar", zbar, None, 3.0, crop_px)] if zbar else []
        crop += [Step("zxing+sharpen", self.first, enhance.sharpen, 3.0, crop_px)] + self.full_steps[2:]
        self.whole_steps = [s for s in crop if s in self.full_steps]  # crop steps on the whole frame
        wide = [self.lores_step]
        wide += [Step("pyzbar-fast", zbar_fast, None, 2.5)] if zbar_fast else []
        wide += [Step("zxing+contrast", self.first, enhance.local_contrast, 4.0),
                 Step("zxing-global", zx_global, None, 1.0)]
        wide += [Step("pyzbar-fast+invert", zbar_fast, np.invert, 2.5)] if zbar_fast else []
        wide += lores_tilt
        self.wide_steps = wide
        self.crop_steps = crop
        self.regions: list[Region] = []
        self.turn = self.more_turn = 0
        self.previous: set[str] = set()  # the texts read on the last frame
        self.last = FrameReport()

    def labels(self):
        steps = self.crop_steps + self.wide_steps + self.full_steps
        return [self.first.name] + sorted({f"{s.name}@{where}" for s in steps
                                           for where in ("crop", "full", "lores")})

    def forget(self) -> None:
        """Drop what earlier frames located (a new presentation starts from scratch)."""
        self.regions, self.turn, self.more_turn, self.previous = [], 0, 0, set()

    def decode(self, gray, stop=None, full=None):
        start = self.clock()
        report = self.last = FrameReport()
        codes, boxes = self.first.decode_with_candidates(gray)
        report.steps.append(("zxing", (self.clock() - start) * 1000, len(codes)))
        h, w = gray.shape[:2]
        fresh = [(x0 / w, y0 / h, x1 / w, y1 / h) for x0, y0, x1, y1 in _clusters(boxes)]
        self._remember(fresh, reset=bool(codes) and not fresh)
        has_full = full is not None and full.shape != gray.shape
        seen_before = bool(codes) and {c.text for c in codes} <= self.previous
        if self.regions:
            report.budget_ms = self.budget_ms
            codes += self._look_closer(gray, full if has_full else gray, has_full, start, stop, report,
                                       {c.text for c in codes} | self.previous)
        elif not codes:
            report.budget_ms = self.idle_budget_ms
            codes += self._look_wide(gray, full if has_full else None, start, stop, report)
        else:
            report.budget_ms = self.budget_ms
            if seen_before and has_full:
                # Nothing new to report on this frame (its verdict is not waiting): the
                # full frame may hold another code the lores frame is too coarse for.
                codes += self._look_more(full, start, stop, report)
        self.previous = {c.text for c in codes}
        report.used_ms = (self.clock() - start) * 1000
        return _unique(codes)

    # -- the steps ------------------------------------------------------------------
    def _fits(self, step: Step, pixels: int, start: float, budget: float, report) -> bool:
        if (self.clock() - start) * 1000 + step.estimate_ms(pixels) <= budget:
            return True
        report.left_out += 1
        step.forget_spike()
        return False

    def _try(self, step: Step, image, report, where: str) -> list[Decoded]:
        t = self.clock()
        if step is self.full_step:  # the whole full frame: also where symbols sit unread
            found, boxes = self.first.decode_with_candidates(image)
            h, w = image.shape[:2]
            self._remember([(x0 / w, y0 / h, x1 / w, y1 / h) for x0, y0, x1, y1 in _clusters(boxes)],
                           reset=False, age=False)
        else:
            found = step.run(image)
        ms = (self.clock() - t) * 1000
        step.learn(ms, image.size)
        label = f"{step.name}@{where}"
        report.steps.append((label, ms, len(found)))
        return [Decoded(d.text, label) for d in found]

    def _look_closer(self, gray, big, has_full, start, stop, report, known) -> list[Decoded]:
        """The crop steps, in each region's rotation, on crops of ``big`` (the full
        frame, or the frame itself); the full-frame steps once a frame, when there is
        one, and the whole-lores step once a frame. A step that reads only codes in ``known`` (read on the lores frame, or on
        the last frame: a neighbour inside the crop, or a code already reported) has
        not read the region's unread code: the next step runs."""
        found: list[Decoded] = []
        report.regions = min(len(self.regions), MAX_REGIONS)
        wholes = self.whole_steps + [self.lores_step]
        whole_done = [] if has_full else list(self.whole_steps)
        for region in list(self.regions[:MAX_REGIONS]):
            crop = _crop(big, region.box)
            steps, first = self.crop_steps, region.turn
            if region in self.regions:  # looked at on this frame: the others go first next time
                self.regions.remove(region)
                self.regions.append(region)
            for k in range(len(steps)):
                if stop is not None and stop():
                    return found
                step = steps[(first + k) % len(steps)]
                whole = any(step is w for w in wholes)
                if whole and any(step is w for w in whole_done):
                    continue
                image, where = (big, "full") if whole else (crop, "crop")
                if step is self.lores_step:
                    image, where = gray, "lores"
                if not self._fits(step, image.size, start, report.budget_ms, report):
                    continue
                region.turn = (first + k + 1) % len(steps)
                got = self._try(step, image, report, where)
                found += got
                got = [d for d in got if d.text not in known]
                if whole:
                    whole_done.append(step)
                if got:
                    known = known | {d.text for d in got}
                    if whole:  # the whole frame covers every region
                        self.regions = []
                        return found
                    if region in self.regions:
                        self.regions.remove(region)
                    break
        return found

    def _look_wide(self, gray, full, start, stop, report) -> list[Decoded]:
        """No sign of a code: the full-frame steps (when there is a full frame) and
        the wide steps on the lores frame, in rotation across frames."""
        steps = [(s, gray, "lores") for s in self.wide_steps]
        if full is not None:
            steps[1:1] = [(s, full, "full") for s in self.full_steps]  # after the cheap lores step
        found, self.turn = self._rotate(steps, self.turn, start, stop, report)
        return found

    def _look_more(self, full, start, stop, report) -> list[Decoded]:
        """The full-frame steps, in rotation, on a frame whose codes were all read before."""
        steps = [(s, full, "full") for s in self.full_steps]
        found, self.more_turn = self._rotate(steps, self.more_turn, start, stop, report)
        return found

    def _rotate(self, steps, first, start, stop, report) -> tuple[list[Decoded], int]:
        """Runs ``steps`` from index ``first`` on while they fit; returns what the first
        successful one read and where the next frame starts."""
        turn = first
        for k in range(len(steps)):
            if stop is not None and stop():
                break
            step, image, where = steps[(first + k) % len(steps)]
            if not self._fits(step, image.size, start, report.budget_ms, report):
                continue
            turn = (first + k + 1) % len(steps)
            found = self._try(step, image, report, where)
            if found:
                return found, turn
        return [], turn

    def _remember(self, boxes, reset: bool, age: bool = True) -> None:
        """Age remembered regions and merge this frame's located-but-unread codes."""
        if reset:
            self.regions = []
            return
        kept = []
        for region in self.regions:
            region.ttl -= 1 if age else 0
            if region.ttl > 0:
                kept.append(region)
        for box in boxes:
            same = next((r for r in kept if r.overlaps(box)), None)
            if same is not None:
                same.box, same.ttl = box, REGION_TTL
            else:
                kept.insert(0, Region(box))
        self.regions = kept[:REMEMBERED_REGIONS]


def _clusters(boxes):
    """Boxes merged where they overlap once grown by half their size: zxing-cpp reports
    parts of one unread symbol (a finder pattern, a wrong triple) as separate boxes."""
    groups = []
    for box in sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
        grown = _grow(box, 0.5)
        for i, group in enumerate(groups):
            if _intersects(grown, _grow(group, 0.5)):
                groups[i] = (min(group[0], box[0]), min(group[1], box[1]),
                             max(group[2], box[2]), max(group[3], box[3]))
                break
        else:
            groups.append(tuple(box))
    return groups


def _grow(box, by):
    dx, dy = (box[2] - box[0]) * by / 2, (box[3] - box[1]) * by / 2
    return (box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy)


def _intersects(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _crop(image: np.ndarray, box, pad: float = 0.35, min_side: int = 48) -> np.ndarray:
    """The part of ``image`` around ``box`` (fractions), padded for the quiet zone."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    side = max(x1 - x0, y1 - y0, min_side)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, side * (0.5 + pad)
    left, top = max(0, int(cx - half)), max(0, int(cy - half))
    right, bottom = min(w, int(cx + half) + 1), min(h, int(cy + half) + 1)
    return np.ascontiguousarray(image[top:bottom, left:right])


def _backend(name: str) -> Decoder:
    if name == "zxing":
        return ZxingDecoder("local")
    if name == "zxing-global":
        return ZxingDecoder("global")
    if name == "pyzbar":
        return PyzbarDecoder(invert=True)
    if name == "pyzbar-fast":  # the last stage of auto: half size above 480 px
        return PyzbarDecoder(invert=True, max_side=FAST_MAX_SIDE)
    raise ConfigError(Msg("unknown decoder {name}: use one of {names} or a comma-separated chain "
                          "such as 'zxing,pyzbar'", name=repr(name), names=", ".join(NAMES)))


def make_decoder(name: str = "auto", **plan_options) -> Decoder:
    """The decoder called ``name``: ``auto``, one backend, or ``a,b,...`` as a chain.

    ``auto`` is :class:`ScanPlan` (``plan_options``: ``budget_ms``, ``idle_budget_ms``);
    without zxing-cpp it falls back to zbar alone. Naming a missing backend
    explicitly is a :class:`HardwareError`.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        try:
            return ScanPlan(**plan_options)
        except HardwareError:  # no zxing-cpp: zbar alone (or a clear error if neither)
            decoders = []
            for part in AUTO_FALLBACK:
                try:
                    decoders.append(_backend(part))
                except HardwareError:
                    continue
            return ChainDecoder(decoders, "auto")
    parts = [p.strip() for p in name.split(",") if p.strip()]
    if len(parts) == 1:
        return _backend(parts[0])
    return ChainDecoder([_backend(p) for p in parts], ",".join(parts))
