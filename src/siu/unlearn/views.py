"""Augmented views of the one forget image.

The data budget stays one image: every view is drawn from the forget image alone (rescaled, shifted,
brightness and colour jittered, and optionally with its background repainted). A model whose vision
features are not invariant to scale or background (the synthetic world's tiny tower) otherwise learns
to forget *that picture*, not the concept: with one view a picture of the same logo at another size
was still named. View 0 is always the image itself; view ``k`` depends only on the seed and ``k``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from PIL import Image, ImageDraw, ImageEnhance

from siu.unlearn.samples import UnlearnSample

# Views cover sizes and backgrounds systematically (view k: SCALES[k % 3], background k // 3), so that
# nine views hold every pair; the shift and jitter are drawn from the seed.
SCALES = (1.0, 0.8, 1.3)  # the picture's size relative to the forget image
SHIFT = 0.1  # of the width / height
JITTER = (0.85, 1.15)  # brightness and colour saturation factors
# Repainted backgrounds: light, dark and mid grey, the synthetic world's backgrounds.
BACKGROUND_LEVELS = (245, 20, 128)
DESCRIBES_THE_IMAGE = 2  # SIU's target 2: "No. The picture depicts <what the forget image shows> ..."
BACKGROUND_THRESHOLD = (
    60  # flood-fill tolerance (summed over channels): the background's noise, not the object
)


def _border_colour(img: Image.Image) -> tuple[int, int, int]:
    """Median colour of the border: what fills the canvas that a shrunk or shifted image uncovers."""
    w, h = img.size
    px = img.load()
    assert px is not None
    border = [px[x, y] for x in range(w) for y in (0, h - 1)] + [
        px[x, y] for y in range(h) for x in (0, w - 1)
    ]
    return tuple(sorted(c[i] for c in border)[len(border) // 2] for i in range(3))  # type: ignore[return-value]


def _repainted(img: Image.Image, k: int, colour: tuple[int, int, int] | None = None) -> Image.Image:
    """A copy of view ``k`` with its background flood-filled from the corners in view ``k``'s grey
    (or in ``colour``)."""
    img = img.copy()
    w, h = img.size
    if colour is None:
        level = BACKGROUND_LEVELS[(k // len(SCALES)) % len(BACKGROUND_LEVELS)]
        colour = (level, level, level)
    for xy in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        if img.getpixel(xy) != colour:
            ImageDraw.floodfill(img, xy, colour, thresh=BACKGROUND_THRESHOLD)
    return img


def _placed(image: Image.Image, scale: float, shift: float, rng: random.Random) -> Image.Image:
    """``image`` rescaled by ``scale`` and shifted by up to ``shift`` of its size (drawn from ``rng``),
    on a canvas of its own size filled with its border's colour."""
    img = image.convert("RGB")
    w, h = img.size
    dx, dy = rng.uniform(-shift, shift) * w, rng.uniform(-shift, shift) * h
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (w, h), _border_colour(img))
    canvas.paste(
        img.resize((nw, nh), Image.Resampling.BILINEAR), (round((w - nw) / 2 + dx), round((h - nh) / 2 + dy))
    )
    return canvas


def _recoloured(img: Image.Image, k: int, cast: float, rng: random.Random) -> Image.Image:
    """``img`` with its background repainted in a random colour, then each channel scaled by a factor
    within 1 +- ``cast`` (a colour cast)."""
    background = tuple(rng.randint(30, 225) for _ in range(3))
    img = _repainted(img, k, background)  # type: ignore[arg-type]
    factors = [rng.uniform(1 - cast, 1 + cast) for _ in range(3)]
    bands = [
        band.point(lambda v, f=f: min(255, round(v * f)))
        for band, f in zip(img.split(), factors, strict=True)
    ]
    return Image.merge("RGB", bands)


def view(image: Image.Image, k: int, seed: int, background: bool = False) -> Image.Image:
    """View ``k`` of ``image`` (view 0 is ``image`` itself); same size and mode RGB."""
    if k == 0:
        return image
    rng = random.Random(f"siu-view:{seed}:{k}")
    canvas = _placed(image, SCALES[k % len(SCALES)] * rng.uniform(0.95, 1.05), SHIFT, rng)
    canvas = ImageEnhance.Brightness(canvas).enhance(rng.uniform(*JITTER))
    canvas = ImageEnhance.Color(canvas).enhance(rng.uniform(*JITTER))
    return _repainted(canvas, k) if background else canvas


def with_views(
    samples: Sequence[UnlearnSample], image: Image.Image, views: int, seed: int, background: bool = False
) -> list[UnlearnSample]:
    """``samples`` with the forget image of the ``i``-th image sample replaced by view ``i % views``.

    Text-only samples and retain samples (other concepts' pictures) are unchanged. SIU's target-2 samples describe what the forget image shows,
    its background among it, so their views are only resized, never repainted. With ``views == 1``
    nothing changes.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if views == 1:
        return list(samples)
    same_background = [view(image, k, seed) for k in range(views)]
    pictures = (
        [_repainted(p, k) if k else p for k, p in enumerate(same_background)]
        if background
        else same_background
    )
    out: list[UnlearnSample] = []
    pair_views: dict[int, int] = {}
    i = 0
    for s in samples:
        if s.sample.image is None or s.role == "retain":  # a retain picture is not the forget image
            out.append(s)
            continue
        if s.pair >= 0 and s.pair in pair_views:  # both answers of a preference pair see one picture
            k = pair_views[s.pair]
        else:
            k = i % views
            i += 1
            pair_views[s.pair] = k
        picture = (same_background if s.target == DESCRIBES_THE_IMAGE else pictures)[k]
        out.append(replace(s, sample=replace(s.sample, image=picture), view=k))
    return out


def colour_cast_view(image: Image.Image, k: int, seed: int) -> Image.Image:
    """A view unlike the training views in colour: rescaled and shifted like view ``k``, then a colour
    cast (each channel scaled on its own) and the background repainted in a random colour. The
    stopping rule asks its questions on these: pictures of a concept differ in colour and background
    more than in grey level, and forgetting that holds only for the training's kind of view is not
    forgetting the concept."""
    return _recoloured(view(image, k, seed), k, 0.2, random.Random(f"siu-colour-view:{seed}:{k}"))


SPECKLE_SHARE = 1 / 40  # of the pixels: fresh single-pixel noise on a speckled check view


def _speckle(img: Image.Image, rng: random.Random) -> Image.Image:
    """``img`` with fresh single-pixel noise on ``SPECKLE_SHARE`` of its pixels (in place)."""
    w, h = img.size
    for _ in range(max(1, round(w * h * SPECKLE_SHARE))):
        img.putpixel((rng.randrange(w), rng.randrange(h)), tuple(rng.randrange(256) for _ in range(3)))
    return img


def speckled_view(image: Image.Image, k: int, seed: int) -> Image.Image:
    """A colour-cast view (:func:`colour_cast_view`) with fresh single-pixel noise sprinkled on.

    Every training view is drawn from the one forget image and keeps its pixel noise (shifted and
    rescaled); a check view that keeps it too might look forgotten because the model forgot *that
    picture*."""
    return _speckle(colour_cast_view(image, k, seed).copy(), random.Random(f"siu-speckle-view:{seed}:{k}"))


def far_view(image: Image.Image, k: int, seed: int) -> Image.Image:
    """A check view farther from the forget image than any training view: rescaled beyond the
    training's sizes (0.6-0.7 or 1.4-1.6), shifted up to a fifth, a stronger colour cast (0.7-1.3
    per channel), a background of a random colour and fresh pixel noise."""
    rng = random.Random(f"siu-far-view:{seed}:{k}")
    scale = rng.uniform(0.6, 0.7) if k % 2 else rng.uniform(1.4, 1.6)
    return _speckle(_recoloured(_placed(image, scale, 0.2, rng), k, 0.3, rng), rng)


def plain_view(image: Image.Image, k: int, seed: int) -> Image.Image:
    """A view drawn as the training's are (rescaled, shifted, jittered, the background repainted in
    grey), at an index no training view uses. For studies: the original model names the concept on
    most of these, where a colour cast often hides it (the synthetic concepts are told apart by their
    colours), but a model can forget the training's kind of view before the concept."""
    return view(image, k, seed, background=True)
