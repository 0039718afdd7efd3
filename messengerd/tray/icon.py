"""The tray icon, drawn with Pillow: a letter on a blue tile, a red badge counting unread.

Drawn for the size it is shown at, not scaled down from a large picture: a tray shows
icons at 16 (Windows), 22-24 (GNOME, KDE, trayer) or 32 pixels, where a scaled-down
digit blurs into the badge. The badge's digits are a pixel font drawn whole pixels at a
time, so they stay sharp at every size; the corners outside the rounded tile are
transparent.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

ICON_SIZE = 64
"""Pixels square of the picture handed to backends that scale it themselves."""

WINDOW_ICON_SIZES = (16, 32, 48)
"""Sizes given to window managers as the windows' icon (_NET_WM_ICON, the taskbar's)."""

BADGE_MAX = 9
"""Largest count the badge spells out; more reads "9+"."""

TILE = (32, 96, 176, 255)
PAPER = (255, 255, 255, 255)
FOLD = (32, 96, 176, 255)
BADGE = (200, 16, 16, 255)
CLEAR = (0, 0, 0, 0)

# fmt: off
GLYPHS = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    "+": ("...", ".#.", "###", ".#.", "..."),
}
# fmt: on
"""The badge's pixel font: 3 by 5 cells, the smallest in which every digit differs."""

GLYPH_WIDTH, GLYPH_HEIGHT = 3, 5
GLYPH_GAP = 1
"""Font pixels between two glyphs."""
BADGE_MARGIN = 1
"""Font pixels of red around the glyphs."""


def badge_text(unread: int) -> str:
    """What the badge says: nothing for 0, the count up to BADGE_MAX, then `9+`."""
    if unread <= 0:
        return ""
    return str(unread) if unread <= BADGE_MAX else f"{BADGE_MAX}+"


def font_scale(size: int) -> int:
    """Screen pixels per font pixel at icon size `size`: 1 at 16, 2 at 22 to 39, 4 at 64.

    At 16 pixels a 3x5 digit is the most there is room for; from 22 up, doubled, it reads
    at a glance.
    """
    return max(1, (size + 8) // 16)


def badge_box(text: str, size: int) -> tuple[int, int, int, int]:
    """Where the badge for `text` sits in an icon of `size` pixels: its bottom-right corner."""
    scale = font_scale(size)
    width = (len(text) * (GLYPH_WIDTH + GLYPH_GAP) - GLYPH_GAP + 2 * BADGE_MARGIN) * scale
    height = (GLYPH_HEIGHT + 2 * BADGE_MARGIN) * scale
    return size - width, size - height, size, size


def draw_icon(unread: int = 0, size: int = ICON_SIZE) -> Image.Image:
    """The icon as an RGBA image `size` pixels square, with the unread badge above 0."""
    image = Image.new("RGBA", (size, size), CLEAR)
    draw = ImageDraw.Draw(image)
    unit = size / 16
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=round(3 * unit), fill=TILE)
    # The letter on whole pixels, so its edges stay sharp at 16.
    left, top = round(2 * unit), round(4 * unit)
    right, bottom = size - 1 - round(2 * unit), round(12.5 * unit)
    draw.rectangle((left, top, right, bottom), fill=PAPER)
    fold = max(1, round(unit))
    draw.line((left, top, size // 2, round(9 * unit), right, top), fill=FOLD, width=fold)
    text = badge_text(unread)
    if text:
        _draw_badge(image, text)
    return image


def _draw_badge(image: Image.Image, text: str) -> None:
    size = image.width
    scale = font_scale(size)
    x0, y0, x1, y1 = badge_box(text, size)
    draw = ImageDraw.Draw(image)
    # A square-cornered badge: its edge stays one clean line at every scale.
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=BADGE)
    x = x0 + BADGE_MARGIN * scale
    y = y0 + BADGE_MARGIN * scale
    for char in text:
        for row, line in enumerate(GLYPHS[char]):
            for column, cell in enumerate(line):
                if cell == "#":
                    px, py = x + column * scale, y + row * scale
                    draw.rectangle((px, py, px + scale - 1, py + scale - 1), fill=PAPER)
        x += (GLYPH_WIDTH + GLYPH_GAP) * scale


def read_badge(image: Image.Image) -> str:
    """The badge's text read back from `image`'s pixels ("" when there is none).

    Reads what a person would: glyph cells of white on the badge's red, compared with the
    font. Used by the tests on drawn icons and on screenshots of the docked icon.
    """
    rgb = image.convert("RGB")
    size = rgb.width
    scale = font_scale(size)
    for length in (2, 1):
        text = "0" * length
        x0, y0, x1, y1 = badge_box(text, size)
        if rgb.getpixel((x0, y0)) != BADGE[:3] or rgb.getpixel((x1 - 1, y1 - 1)) != BADGE[:3]:
            continue
        read = ""
        for index in range(length):
            gx = x0 + (BADGE_MARGIN + index * (GLYPH_WIDTH + GLYPH_GAP)) * scale
            gy = y0 + BADGE_MARGIN * scale
            cells = tuple(
                "".join(
                    "#" if _is_paper(rgb, gx + c * scale, gy + r * scale, scale) else "."
                    for c in range(GLYPH_WIDTH)
                )
                for r in range(GLYPH_HEIGHT)
            )
            match = [char for char, glyph in GLYPHS.items() if glyph == cells]
            if not match:
                break
            read += match[0]
        else:
            return read
    return ""


def _is_paper(rgb: Image.Image, x: int, y: int, scale: int) -> bool:
    """Every screen pixel of one font pixel is the paper white (a sharp glyph, no blur)."""
    return all(
        rgb.getpixel((x + dx, y + dy)) == PAPER[:3] for dx in range(scale) for dy in range(scale)
    )
