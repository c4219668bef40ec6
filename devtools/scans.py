"""Scanned PDFs made from text: pages of pixels only, no text layer, for OCR tests and the
benchmark (the corpus holds one 3-page scan; fan-out across a pool wants more pages).

Each page is an image of printed lines (Pillow's own font, so no system font is needed),
saved into one PDF at `dpi`, the resolution pdftoppm renders at by default: the page
images tesseract reads are the ones drawn here, pixel for pixel.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORDS = ("invoice", "account", "ledger", "river", "mountain", "quarter", "signal", "harbour",
         "crystal", "meadow", "lantern", "orchard", "velvet", "copper", "timber", "marble",
         "falcon", "summit", "garden", "beacon", "thunder", "silver", "canyon", "willow",
         "ember", "glacier", "prairie", "compass", "anchor")
RENDER_DPI = 150  # pdftoppm's default, so the images tesseract reads are the ones drawn


def page_lines(page: int, lines: int, seed: int = 0) -> list[str]:
    """The lines printed on page `page` (1-based): a heading naming it, then words."""
    rng = random.Random(seed * 100_003 + page)
    body = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(lines - 1)]
    return [f"Page {page} of the scan", *body]


def make_scan(path: Path, pages: int, *, lines: int = 8, width_in: float = 5.0,
              height_in: float = 3.5, font_px: int = 28, seed: int = 0) -> Path:
    """Write a `pages`-page scanned PDF to `path`: one image per page, no text layer."""
    font = ImageFont.load_default(size=font_px)
    size = (round(width_in * RENDER_DPI), round(height_in * RENDER_DPI))
    images = []
    for page in range(1, pages + 1):
        image = Image.new("L", size, 255)
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(page_lines(page, lines, seed)):
            draw.text((40, 30 + row * font_px * 1.5), line, fill=0, font=font)
        images.append(image)
    images[0].save(path, "PDF", resolution=RENDER_DPI, save_all=True,
                   append_images=images[1:])
    return path
