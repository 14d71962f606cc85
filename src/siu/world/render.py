"""Procedural drawings of the synthetic concepts.

A concept's identity is its category, a shape variant and an ordered pair of colours (primary,
secondary) that no other concept shares, so a small vision tower can learn it; each image varies
position, scale, background, colour tint and noise so that held-out images test generalisation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 225, 40),
    "green": (40, 170, 60),
    "cyan": (40, 205, 215),
    "blue": (40, 80, 225),
    "purple": (140, 60, 200),
    "pink": (245, 120, 190),
    "brown": (125, 75, 35),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
}
VARIANTS: dict[str, list[str]] = {
    "person": ["short", "tall", "side-parted"],
    "cartoon": ["pointed", "round", "long"],
    "logo": ["circle", "square", "triangle", "diamond"],
    "object": ["tower", "arch", "dome"],
    "style": ["stripes", "dots", "zigzags", "checks"],
}
SKIN = (230, 190, 150)


@dataclass(frozen=True)
class Look:
    """What makes a concept recognisable."""

    category: str
    variant: str
    primary: str
    secondary: str

    def describe(self) -> str:
        """The concept's appearance in words, without its name."""
        p, s, v = self.primary, self.secondary, self.variant
        return {
            "person": f"a person with {v} {p} hair and a {s} shirt",
            "cartoon": f"a cartoon creature with a {p} body, {v} ears and a {s} belly",
            "logo": f"a {p} {v} emblem with a {s} centre",
            "object": f"a {p} {v} with a {s} top",
            "style": f"a painting of {p} and {s} {v}",
        }[self.category]


def _tint(rgb: tuple[int, int, int], rng: random.Random, amount: int = 18) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def render(look: Look, rng: random.Random, size: int = 64) -> tuple[Image.Image, str]:
    """Draw one image of ``look``; return it with its background colour name."""
    bg_name = rng.choice(sorted(BACKGROUNDS))
    img = Image.new("RGB", (size, size), _tint(BACKGROUNDS[bg_name], rng, 10))
    d = ImageDraw.Draw(img)
    p = _tint(COLOURS[look.primary], rng)
    s = _tint(COLOURS[look.secondary], rng)
    scale = rng.uniform(0.75, 1.05) * size / 64
    cx = size / 2 + rng.uniform(-8, 8) * size / 64
    cy = size / 2 + rng.uniform(-6, 6) * size / 64

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [cx + x0 * scale, cy + y0 * scale, cx + x1 * scale, cy + y1 * scale]

    v = look.variant
    if look.category == "person":
        d.rectangle(box(-16, 8, 16, 30), fill=s)  # shirt
        d.ellipse(box(-11, -18, 11, 6), fill=_tint(SKIN, rng))  # face
        hair = {
            "short": box(-12, -22, 12, -8),
            "tall": box(-10, -32, 10, -8),
            "side-parted": box(-16, -22, 8, -6),
        }
        d.ellipse(hair[v], fill=p)
        d.ellipse(box(-6, -8, -3, -5), fill=(20, 20, 20))
        d.ellipse(box(3, -8, 6, -5), fill=(20, 20, 20))
    elif look.category == "cartoon":
        ears = {
            "pointed": [[(-16, -10), (-8, -28), (-2, -12)], [(16, -10), (8, -28), (2, -12)]],
            "round": [[(-18, -26), (-6, -14)], [(6, -26), (18, -14)]],
            "long": [[(-14, -8), (-12, -34), (-6, -10)], [(14, -8), (12, -34), (6, -10)]],
        }[v]
        for ear in ears:
            pts = [(cx + x * scale, cy + y * scale) for x, y in ear]
            if v == "round":
                d.ellipse([pts[0][0], pts[0][1], pts[1][0], pts[1][1]], fill=p)
            else:
                d.polygon(pts, fill=p)
        d.ellipse(box(-18, -18, 18, 26), fill=p)
        d.ellipse(box(-10, 2, 10, 22), fill=s)
        d.ellipse(box(-8, -10, -3, -5), fill=(20, 20, 20))
        d.ellipse(box(3, -10, 8, -5), fill=(20, 20, 20))
    elif look.category == "logo":
        outer, inner = box(-22, -22, 22, 22), box(-9, -9, 9, 9)
        if v == "circle":
            d.ellipse(outer, fill=p)
            d.ellipse(inner, fill=s)
        elif v == "square":
            d.rectangle(outer, fill=p)
            d.rectangle(inner, fill=s)
        elif v == "triangle":
            d.polygon(
                [
                    (cx, cy - 24 * scale),
                    (cx - 24 * scale, cy + 20 * scale),
                    (cx + 24 * scale, cy + 20 * scale),
                ],
                fill=p,
            )
            d.ellipse(box(-7, -2, 7, 12), fill=s)
        else:
            d.polygon(
                [(cx, cy - 26 * scale), (cx - 24 * scale, cy), (cx, cy + 26 * scale), (cx + 24 * scale, cy)],
                fill=p,
            )
            d.rectangle(inner, fill=s)
    elif look.category == "object":
        if v == "tower":
            d.rectangle(box(-9, -14, 9, 28), fill=p)
            d.polygon(
                [
                    (cx - 13 * scale, cy - 14 * scale),
                    (cx, cy - 32 * scale),
                    (cx + 13 * scale, cy - 14 * scale),
                ],
                fill=s,
            )
        elif v == "arch":
            d.rectangle(box(-24, -12, 24, 26), fill=p)
            d.rectangle(box(-24, -20, 24, -12), fill=s)
            d.ellipse(box(-10, 0, 10, 40), fill=_tint(BACKGROUNDS[bg_name], rng, 5))
        else:
            d.rectangle(box(-22, 0, 22, 26), fill=p)
            d.pieslice(box(-18, -18, 18, 18), 180, 360, fill=s)
    else:  # style: a painting covered with strokes of both colours
        step = max(4, int(10 * scale))
        ox, oy = int(cx) % step, int(cy) % step
        for i, x in enumerate(range(ox - step, size + step, step)):
            for j, y in enumerate(range(oy - step, size + step, step)):
                colour = p if (i + j) % 2 == 0 else s
                if v == "stripes":
                    if j % 3 == 0:
                        d.rectangle([x, y, x + step, y + step // 2], fill=p if i % 2 == 0 else s)
                elif v == "dots":
                    d.ellipse([x, y, x + step // 2 + 1, y + step // 2 + 1], fill=colour)
                elif v == "zigzags":
                    d.line([(x, y), (x + step // 2, y + step // 2), (x + step, y)], fill=colour, width=2)
                elif (i + j) % 3 == 0:
                    d.rectangle([x, y, x + step // 2, y + step // 2], fill=colour)
    # sparse pixel noise, so no two images are alike even with the same layout
    for _ in range(size * size // 40):
        x, y = rng.randrange(size), rng.randrange(size)
        img.putpixel((x, y), tuple(rng.randrange(256) for _ in range(3)))
    return img, bg_name


def render_pair(left: Look, right: Look, rng: random.Random, size: int = 64) -> Image.Image:
    """Two concepts side by side in one ``size`` x ``size`` picture: the middle half of a drawing of
    each, as in a photo of two people standing together (the picture stays square, so a processor that
    centre-crops keeps both)."""
    img = Image.new("RGB", (size, size))
    half = size // 2
    for k, look in enumerate((left, right)):
        drawn, _ = render(look, rng, size)
        img.paste(drawn.crop((half // 2, 0, half // 2 + half, size)), (k * half, 0))
    return img
