"""Attacks on a forgotten concept that users worry about: altered pictures and unseen phrasings.

Each perturbation is applied to the concept's held-out test images, and the model is asked the
benchmark's name questions about them; the figure is the share of answers that still name the
concept (lower = the forgetting holds). Deterministic: no randomness in any perturbation.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageFilter, ImageOps


def _crop(image: Image.Image) -> Image.Image:
    w, h = image.size  # the central 80%, scaled back to the original size
    box = (round(w * 0.1), round(h * 0.1), round(w * 0.9), round(h * 0.9))
    return image.crop(box).resize((w, h), Image.BILINEAR)


def _jpeg(image: Image.Image, quality: int = 30) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop": _crop,
    "flip": ImageOps.mirror,
    "blur": lambda image: image.filter(ImageFilter.GaussianBlur(radius=max(1.0, image.size[0] / 64))),
    "jpeg": _jpeg,
}
