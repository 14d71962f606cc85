"""Type checks of a benchmark's JSON files (:class:`JsonDoc`: every deviation becomes a
:class:`Problem` and checking carries on) and the text forms in which names and prompts are compared."""

from __future__ import annotations

import difflib
import json
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from siu.bench.images import BenchFileError, resolve_inside

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One deviation from the format: benchmark-relative file, field path inside it, explanation."""

    file: str
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"


INVALID: Any = object()  # "no usable value"; JSON null is a value, so None cannot say this
MISSING: Any = object()


def folded(text: str) -> str:
    """The form in which two spellings of a name are the same: NFC, whitespace folded, case folded."""
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


def invisible_characters(text: str) -> list[str]:
    """Control and format characters (bidi overrides, zero-width joiners, ...): ``U+202E RIGHT-TO-LEFT
    OVERRIDE`` for each, so that a message can name what cannot be seen."""
    return [
        f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}"
        for ch in dict.fromkeys(text)
        if unicodedata.category(ch) in ("Cc", "Cf")
    ]


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def join_field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class JsonDoc:
    """Type checks for one JSON file. Every deviation becomes a Problem and checking carries on;
    getters return a value of the right type either way, and ``errors`` tells whether one failed."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self.errors = 0

    def error(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, field, message))
        self.errors += 1

    def inside(self, base: Path, rel: str, field: str) -> Path | None:
        """``rel`` resolved inside ``base`` (:func:`siu.bench.images.resolve_inside`), or None with the
        reason recorded as an error at ``field``."""
        try:
            return resolve_inside(base, rel)
        except BenchFileError as err:
            self.error(field, err.reason)
            return None

    def warn(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, field, message, "warning"))

    def read(self, path: Path) -> Any:
        try:
            text = path.read_bytes().decode("utf-8-sig")  # tolerate the BOM some editors write
        except OSError as err:
            self.error("", f"cannot read file ({err.strerror or err})")
            return INVALID
        except UnicodeDecodeError as err:
            self.error("", f"not UTF-8 text (byte {err.start})")
            return INVALID
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            self.error("", f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}")
            return INVALID
        except (ValueError, RecursionError) as err:  # e.g. an integer with thousands of digits
            self.error("", f"invalid JSON ({err})")
            return INVALID

    def text(self, obj: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
        """A non-empty string; required unless ``default`` is given."""
        value = obj.get(key, MISSING)
        field = join_field(where, key)
        if value is MISSING:
            if default is None:
                self.error(field, "missing required field")
                return ""
            return default
        if not isinstance(value, str):
            self.error(field, f"expected a string, got {kind_of(value)}")
            return ""
        if not value.strip():
            self.error(field, "must not be empty")
        return value

    def optional_text(self, obj: dict[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is None or isinstance(value, str):
            return value
        self.error(join_field(where, key), f"expected a string or null, got {kind_of(value)}")
        return None

    def flag(self, obj: dict[str, Any], key: str, where: str) -> bool:
        value = obj.get(key, False)
        if not isinstance(value, bool):
            self.error(join_field(where, key), f"expected true or false, got {kind_of(value)}")
            return False
        return value

    def strings(
        self, obj: dict[str, Any], key: str, where: str, *, required: bool, nonempty: bool
    ) -> list[str]:
        """A list of non-empty strings; ``nonempty`` also requires at least one entry."""
        value = obj.get(key, MISSING)
        field = join_field(where, key)
        if value is MISSING:
            if required:
                self.error(field, "missing required field")
            return []
        if not isinstance(value, list):
            self.error(field, f"expected a list of strings, got {kind_of(value)}")
            return []
        if nonempty and not value:
            self.error(field, "must not be empty")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                got = "an empty string" if isinstance(item, str) else kind_of(item)
                self.error(f"{field}[{i}]", f"expected a non-empty string, got {got}")
            else:
                out.append(item)
        return out

    def items(
        self,
        obj: dict[str, Any],
        key: str,
        parse: Callable[[dict[str, Any], str], T | None],
        *,
        required: bool,
        label: str | None = None,
    ) -> tuple[list[tuple[int, T]], bool]:
        """Parse a list of objects; return (index, record) pairs and whether every entry parsed.

        ``label`` names the list in field paths when that is not ``key`` (a top-level list has "").
        """
        label = key if label is None else label
        value = obj.get(key, MISSING)
        if value is MISSING:
            if required:
                self.error(key, "missing required field")
            return [], not required
        if not isinstance(value, list):
            self.error(key, f"expected a list of objects, got {kind_of(value)}")
            return [], False
        out: list[tuple[int, T]] = []
        for i, item in enumerate(value):
            where = f"{label}[{i}]"
            if not isinstance(item, dict):
                self.error(where, f"expected an object, got {kind_of(item)}")
                continue
            before = self.errors
            parsed = parse(item, where)
            if parsed is not None and self.errors == before:
                out.append((i, parsed))
        return out, len(out) == len(value)

    def unknown(self, obj: dict[str, Any], where: str, allowed: Iterable[str]) -> None:
        """Warn about keys the format does not define: usually a typo that silently loses data."""
        allowed = list(allowed)
        for key in obj:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.warn(join_field(where, key), f"unknown field (ignored){hint}")


def field_names(cls: type, *, drop: tuple[str, ...] = ()) -> list[str]:
    """The names of a record's fields (those a JSON object of it may have), but ``drop``."""
    return [f.name for f in fields(cls) if f.name not in drop]
