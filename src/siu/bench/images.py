"""Safe image decoding and path resolution for benchmark directories.

Benchmarks are assembled by hand from photos found anywhere, so every image is treated as untrusted:
its size is bounded before decoding, only common raster formats are accepted (PIL would otherwise
hand EPS files to Ghostscript), and every failure becomes one :class:`BenchmarkError` line.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image, ImageOps, UnidentifiedImageError

from siu.errors import BenchmarkError

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
"""Formats that :func:`open_image` decodes (the JPEG opener also reads the MPO photos of many phones)."""

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 50 * 2**20


class BenchFileError(BenchmarkError):
    """A file of a benchmark that cannot be used; ``reason`` is the message without the path.

    The validator reports ``reason`` next to the benchmark-relative file and field, so it keeps the
    two apart instead of parsing the message.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _detail(err: BaseException, path: Path) -> str:
    """The exception text without the file name that PIL likes to embed in it."""
    if isinstance(err, UnidentifiedImageError):
        return "cannot identify image file"
    text = str(err)
    for spelling in (repr(str(path)), str(path)):
        text = text.replace(spelling, "")
    text = " ".join(text.split()).strip(" :")
    return text or type(err).__name__


def open_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> Image.Image:
    """Decode an image fully and return it as RGB; raise :class:`BenchFileError` if it is unusable.

    EXIF orientation is applied (phone photos are often stored sideways) and transparent pixels
    become white, so that a logo with an alpha channel looks as it does on a web page.
    """
    path = Path(path)
    if not path.exists():
        raise BenchFileError(path, "image file not found")
    if not path.is_file():
        raise BenchFileError(path, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise BenchFileError(path, "image file is empty")
    if size > max_bytes:
        raise BenchFileError(
            path, f"image file too large ({size / 2**20:.1f} MiB; limit {max_bytes / 2**20:g} MiB)"
        )
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            # Checked here rather than through Image.MAX_IMAGE_PIXELS, which is global to the process.
            width, height = img.size
            if width * height > max_pixels:
                raise BenchFileError(
                    path, f"image too large ({width}x{height} pixels; limit {max_pixels} pixels)"
                )
            img.load()
            try:
                oriented = ImageOps.exif_transpose(img)
            except (OSError, ValueError, KeyError, TypeError, SyntaxError, struct.error):
                oriented = img  # broken EXIF metadata only loses the rotation, not the picture
            has_alpha = oriented.mode in ("RGBA", "LA", "PA") or "transparency" in oriented.info
            if has_alpha:
                rgba = oriented.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, rgba).convert("RGB")
            return oriented.convert("RGB")
    except BenchFileError:
        raise
    except Image.DecompressionBombError as err:
        raise BenchFileError(path, f"image too large ({_detail(err, path)})") from err
    except UnidentifiedImageError as err:
        raise BenchFileError(
            path,
            f"image is corrupt or not a supported image (cannot identify image file; "
            f"supported: {', '.join(IMAGE_FORMATS)})",
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as err:
        detail = _detail(err, path)
        kind = "truncated" if "truncated" in detail else "corrupt"
        raise BenchFileError(path, f"image is {kind} ({detail})") from err


def resolve_inside(root: Path, rel: str) -> Path:
    """Resolve ``rel`` below ``root``; raise :class:`BenchFileError` if it is absolute or escapes ``root``.

    Symlinks and ``..`` are resolved first, so a link that points out of the benchmark is caught too.
    The file does not have to exist.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise BenchFileError(repr(rel), "path must be a non-empty relative path")
    if "\x00" in rel:
        raise BenchFileError(repr(rel), "path contains a NUL character")
    # Windows forms are refused on every system so that a benchmark stays portable.
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).anchor:
        raise BenchFileError(rel, "path must be relative, not absolute")
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise BenchFileError(rel, f"path escapes its directory {Path(root)}")
    return target


@dataclass(frozen=True)
class ImageRef:
    """An image that a benchmark names, with where it is named (for the validator's messages)."""

    file: str  # the JSON file that names it, relative to the benchmark root
    field: str
    path: Path
    concept: str | None = None  # slug, or None for specificity images
    forget: bool = False
