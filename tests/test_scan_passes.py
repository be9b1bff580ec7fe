"""The auto plan's later passes, each on a real photo (or phone scene) that only it reads.

Each test plays a corpus image through ``replay:`` (lores frame fitting 640x480, full
frame fitting 1280x960, as the Pi camera streams them), checks that the plain decoders
miss the code, that the plan reads it, and that the same plan without the pass does not:
the pass is what reads it. Budgets are unlimited here (no timing in a test); the
benchmark (bench/scan.py) measures what fits in a frame's budget.
"""

from pathlib import Path

import numpy as np
import pytest

from kiosk.hardware.camera import open_source
from kiosk.hardware.camera import synthetic as syn
from kiosk.hardware.camera.replay import fit, load_gray
from kiosk.hardware.decoder import ZxingDecoder, make_decoder
from kiosk.hardware.enhance import half_size

CONDITIONS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "qr-conditions"
needs_corpus = pytest.mark.skipif(not CONDITIONS.is_dir(), reason="shared qr-conditions corpus not present")
FRAMES = 10  # a customer holding the phone for a third of a second


def _frame(name: str):
    source = open_source(f"replay:{CONDITIONS / name}?fps=0", once=True)
    try:
        frame = source.read()
    finally:
        source.stop()
    assert frame.gray.shape[1] <= 640 and frame.gray.shape[0] <= 480
    assert frame.full is not None and max(frame.full.shape) > 640
    return frame.gray, frame.full


def _plan(without=None):
    plan = make_decoder("auto", budget_ms=1000, idle_budget_ms=1000)
    if without is not None:
        gone = without(plan)
        gone = gone if isinstance(gone, list) else [gone]
        for steps in (plan.crop_steps, plan.wide_steps, plan.full_steps, plan.whole_steps):
            steps[:] = [s for s in steps if all(s is not g for g in gone)]
    return plan


def _read(plan, lores, full, frames=FRAMES) -> dict[str, str]:
    """text -> the step that read it first, over ``frames`` frames of the same view."""
    read: dict[str, str] = {}
    for _ in range(frames):
        for d in plan.decode(lores, full=full):
            read.setdefault(d.text, d.decoder)
    return read


def _plain_misses(lores, full):
    for decoder in (ZxingDecoder("local"), ZxingDecoder("global")):
        assert decoder.decode(lores) == [] and decoder.decode(full) == []


@needs_corpus
def test_local_contrast_on_the_full_frame_reads_a_code_under_glare():
    lores, full = _frame("glare/image038.jpg")
    _plain_misses(lores, full)
    read = _read(_plan(), lores, full)
    assert len(read) == 1 and list(read.values()) == ["zxing+contrast@full"]
    # the darkened full frame and the widened crop or lores frame read it too (on later
    # frames): without them, nothing does
    assert _read(_plan(without=lambda p: [p.full_steps[1], p.full_steps[3], *p.tilt_steps[::2]]),
                 lores, full) == {}


@needs_corpus
def test_equalized_full_frame_with_the_global_binarizer_reads_codes_in_a_dim_photo():
    lores, full = _frame("brightness/image010.jpg")
    _plain_misses(lores, full)
    read = _read(_plan(), lores, full)
    assert "zxing-global+equalize@full" in read.values()
    without = _read(_plan(without=lambda p: p.full_steps[2]), lores, full)
    assert len(without) < len(read)


@needs_corpus
def test_darkened_full_frame_reads_a_code_under_glare():
    lores, full = _frame("glare/image011.jpg")
    _plain_misses(lores, full)
    read = _read(_plan(), lores, full)
    assert list(read.values()) == ["zxing+darken@full"]
    assert _read(_plan(without=lambda p: p.full_steps[3]), lores, full) == {}


@needs_corpus
@pytest.mark.parametrize("name", ["perspective/image028.jpg", "perspective/image030.jpg"])
def test_the_stretched_crop_reads_a_code_tilted_far_away_from_the_camera(name):
    lores, full = _frame(name)
    _plain_misses(lores, full)
    read = _read(_plan(), lores, full)
    assert list(read.values()) == ["zxing+widen@crop"]
    assert _read(_plan(without=lambda p: p.tilt_steps), lores, full) == {}
    # the same photo a quarter turned: a phone tipped forward instead of turned aside
    lores, full = (np.ascontiguousarray(np.rot90(image)) for image in (lores, full))
    assert list(_read(_plan(), lores, full).values()) == ["zxing+heighten@crop"]
    assert _read(_plan(without=lambda p: p.tilt_steps[1::2]), lores, full) == {}


def test_equalized_lores_frame_reads_a_phone_screen_the_full_frame_shows_as_moire():
    payload = "KIOSK-0006-ABCD"
    full = syn.phone_screen(payload, "moire", seed=6)
    lores = half_size(full)
    _plain_misses(lores, full)
    assert _read(_plan(), lores, full, 1) == {payload: "zxing-global+equalize@lores"}  # first frame
    # a camera without a full stream: every other pass on the lores frame misses it
    assert _read(_plan(), lores, None, 1) == {payload: "zxing-global+equalize@lores"}
    assert _read(_plan(without=lambda p: p.lores_step), lores, None) == {}


@needs_corpus
def test_frames_whose_codes_were_all_reported_look_at_the_full_frame_for_more():
    # the lores frame scaled from the full one (as bench/scan.py does): here the lores
    # frame reads two of the photo's three codes and locates nothing more
    full = fit(load_gray(CONDITIONS / "rotations/image003.jpg"), (1280, 960))
    lores = fit(full, (640, 480))
    plan = _plan()
    first = plan.decode(lores, full=full)
    assert first and [s[0] for s in plan.last.steps] == ["zxing"]  # a new read: no delay
    assert all(d.decoder == "zxing" for d in first)
    read = _read(plan, lores, full, 2)
    assert len(read) > len(first)
    more = {t for t, how in read.items() if how.endswith("@full")}
    assert more and not more & {d.text for d in first}
    plain = _plan()
    plain._look_more = lambda *args: []  # the plan without the look for more
    assert set(_read(plain, lores, full)) == {d.text for d in first}


@needs_corpus
def test_no_phantom_micro_qr_inside_a_real_code():
    """zxing-cpp 3 also reads Micro QR under "QRCode": in this photo of three QR codes
    it finds a Micro QR "25" in the modules of one of them. The kiosk reads QR only."""
    lores, full = _frame("rotations/image036.jpg")
    read = _read(_plan(), lores, full)
    assert len(read) == 3 and "25" not in read
    assert all(len(text) > 10 for text in read)  # the three test-sheet payloads


@needs_corpus
def test_zbar_reads_chinese_utf8_text_as_zxing_does_not_as_shift_jis_mojibake():
    """zbar guesses Shift_JIS for this UTF-8 payload: '正宗铁观音' came back as
    '豁｣螳鈴刀隗る浹', a wrong payload and a second text for one code."""
    from kiosk.hardware.decoder import PyzbarDecoder
    from kiosk.hardware.enhance import half_size

    lores, full = _frame("glare/image016.jpg")
    texts = {d.text for d in PyzbarDecoder().decode(full)} | {d.text for d in PyzbarDecoder().decode(half_size(full))}
    assert len(texts) == 1 and next(iter(texts)).startswith("正宗铁观音茶叶")
    read = _read(_plan(), lores, full)
    assert all("豁" not in text for text in read)
