"""Every text on every screen, in every language and display size, fits its box and
is readable (contrast at least 4.5:1), measured from the rendered Kivy widgets.

Each size runs ``python -m kiosk.ui.screenshots --check`` in its own process (a Kivy
window's size is fixed once it exists): the same scenes as ``kiosk screenshots``,
driven through the real controller on a demo kiosk; :mod:`kiosk.ui.legibility`
compares each label's texture with its box and its colour with what is behind it.
"""

import json
import os
import subprocess
import sys

import pytest

from kiosk.ui.legibility import contrast, over

SIZES = ("800x480", "1024x600", "720x1280", "480x800")


def test_contrast_maths_matches_wcag():
    assert contrast((1, 1, 1), (0, 0, 0)) == pytest.approx(21.0)
    assert contrast((1, 1, 1), (1, 1, 1)) == pytest.approx(1.0)
    # WCAG's own example: #777 on white is 4.48:1, just under AA
    assert contrast((0x77 / 255,) * 3, (1, 1, 1)) == pytest.approx(4.48, abs=0.01)
    assert over((1, 1, 1, 0.5), (0, 0, 0)) == pytest.approx((0.5, 0.5, 0.5))


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (xvfb-run)")
@pytest.mark.parametrize("size", SIZES)
def test_every_text_fits_and_is_readable(size, tmp_path):
    run = subprocess.run([sys.executable, "-m", "kiosk.ui.screenshots", "--check", "--out",
                          str(tmp_path), "--size", size], capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads((tmp_path / f"check-{size}.json").read_text())
    report = "\n".join(f"{scene}: {line}" for scene, lines in sorted(found.items()) for line in lines)
    assert not found, f"{sum(map(len, found.values()))} unreadable texts:\n{report}"
