"""Headless Chromium (Debian's `chromium`): screenshots of the pages retrainer writes.

`make test` installs it when /usr/bin/chromium is missing. The background-networking
flags matter here: without them Chromium reaches out at start and the closed network
refuses it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def have_chromium() -> bool:
    return Path(CHROMIUM).is_file()


needs_chromium = pytest.mark.skipif(not have_chromium(),
                                    reason="chromium is not installed (make test installs it)")


def screenshot(page: Path, png: Path, width: int, height: int) -> Path:
    """Open `page` in headless Chromium and save a width x height screenshot."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    return png


def pixels(png: Path) -> tuple[tuple[int, int], dict[tuple[int, int, int], int]]:
    """(size, colour -> pixel count) of a screenshot."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
        return rgb.size, {c: n for n, c in colours}


def near(colours: dict[tuple[int, int, int], int], hex_colour: str, tol: int = 12) -> int:
    """Pixels within `tol` of a CSS colour like '#027a48'."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return sum(n for (cr, cg, cb), n in colours.items()
               if abs(cr - r) <= tol and abs(cg - g) <= tol and abs(cb - b) <= tol)


def ink(colours: dict[tuple[int, int, int], int]) -> float:
    """Share of pixels that are not (near) white: text, lines, bars."""
    total = sum(colours.values())
    blank = sum(n for (r, g, b), n in colours.items() if min(r, g, b) >= 245)
    return 1 - blank / total


def assert_self_contained(page: str) -> None:
    """Nothing on the page fetches anything: no script, link, image or URL to reach."""
    assert page.startswith("<!DOCTYPE html>")
    urls = set(re.findall(r"https?://[^\s'\"<>)]*", page, flags=re.IGNORECASE))
    # The SVG namespace is an identifier on inline <svg>, never fetched.
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    lowered = page.lower()
    for fetching in ("<script", "src=", "<link", "@import", "url(", "<iframe", "<img"):
        assert fetching not in lowered, fetching
