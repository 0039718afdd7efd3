"""The tray icon, drawn with Pillow: a letter on a blue tile, a red badge counting unread."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

ICON_SIZE = 64
"""Pixels square; every backend scales it (Windows 16-32, GNOME 22-24, trayer 24)."""

BADGE_MAX = 9
"""Largest count the badge spells out; more reads "9+", which stays legible at 16 pixels."""

TILE = (32, 96, 176, 255)
PAPER = (255, 255, 255, 255)
FOLD = (32, 96, 176, 255)
BADGE = (220, 32, 32, 255)


def badge_text(unread: int) -> str:
    """What the badge says: nothing for 0, the count up to BADGE_MAX, then `9+`."""
    if unread <= 0:
        return ""
    return str(unread) if unread <= BADGE_MAX else f"{BADGE_MAX}+"


def draw_icon(unread: int = 0, size: int = ICON_SIZE) -> Image.Image:
    """The icon as an RGBA image, with the unread badge when `unread` is above 0."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    unit = size / 16
    # A solid tile, not a transparent background: pystray's xorg backend pastes the icon
    # onto black without its alpha, and a bare letter would vanish there.
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=3 * unit, fill=TILE)
    letter = (2 * unit, 4 * unit, 14 * unit, 12.5 * unit)
    draw.rectangle(letter, fill=PAPER)
    draw.line(
        (letter[0], letter[1], size / 2, 9 * unit, letter[2], letter[1]),
        fill=FOLD,
        width=max(1, round(unit)),
    )
    text = badge_text(unread)
    if text:
        radius = 4.5 * unit
        centre = (size - radius - 0.5, radius + 0.5)
        draw.ellipse(
            (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius),
            fill=BADGE,
            outline=PAPER,
            width=max(1, round(unit / 2)),
        )
        font = ImageFont.load_default(size=round(radius * (1.3 if len(text) == 1 else 1.0)))
        draw.text(centre, text, fill=PAPER, font=font, anchor="mm")
    return image
