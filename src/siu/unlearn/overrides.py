"""A user's overrides of the built data: the YAML/JSON file ``--overrides`` reads, and its checks."""

from __future__ import annotations

import difflib
import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siu.errors import SiuError

OVERRIDE_KEYS = (
    "fictitious_names",
    "visible_description",
    "counterfactual",
    "prompts",
    "facts",
    "other_facts",
    "refusals",
)
PROMPT_PLACEHOLDERS = {
    "target1": ("noun",),
    "target2": ("name", "noun"),
    "target3": ("name",),
    "target4": ("name",),
}


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) override file and check its contents."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise SiuError(f"{path}: override file must end in .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SiuError(f"{path}: cannot read override file: {err}") from err
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SiuError(
                f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from err
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SiuError(f"{path}: malformed YAML: {first}") from err
    if data is None:
        data = {}
    check_overrides(data, source=str(path))
    return data


def check_overrides(data: Any, source: str = "overrides") -> None:
    """Raise :class:`SiuError` naming the first field of ``data`` that is not a valid override."""

    def fail(field: str, message: str) -> SiuError:
        return SiuError(f"{source}: {field}: {message}" if field else f"{source}: {message}")

    def strings(value: Any, field: str) -> None:
        if not isinstance(value, list) or not value:
            raise fail(field, "expected a non-empty list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise fail(f"{field}[{i}]", "expected a non-empty string")

    if not isinstance(data, dict):
        raise fail("", f"expected a mapping of override fields, got {type(data).__name__}")
    for key in data:
        if key not in OVERRIDE_KEYS:
            close = difflib.get_close_matches(str(key), OVERRIDE_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise fail(str(key), f"unknown field; {hint}known fields: {', '.join(OVERRIDE_KEYS)}")
    for key in ("fictitious_names", "refusals"):
        if key in data:
            strings(data[key], key)
    for key in ("visible_description", "counterfactual"):
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            raise fail(key, "expected a non-empty string")
    if "prompts" in data:
        prompts = data["prompts"]
        if not isinstance(prompts, dict):
            raise fail("prompts", "expected a mapping with keys target1, target2, target3, target4")
        for key, templates in prompts.items():
            if key not in PROMPT_PLACEHOLDERS:
                raise fail(
                    f"prompts.{key}", f"unknown key; expected one of: {', '.join(PROMPT_PLACEHOLDERS)}"
                )
            strings(templates, f"prompts.{key}")
            for i, template in enumerate(templates):
                _check_template(
                    template, PROMPT_PLACEHOLDERS[key], lambda m, f=f"prompts.{key}[{i}]": fail(f, m)
                )
    for key in ("facts", "other_facts"):
        if key not in data:
            continue
        items = data[key]
        if not isinstance(items, list) or not items:
            raise fail(key, "expected a non-empty list of {question, answer} objects")
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise fail(where, "expected an object with 'question' and 'answer'")
            allowed = ("question", "answer", "name") if key == "other_facts" else ("question", "answer")
            extra = [k for k in item if k not in allowed]
            if extra:
                raise fail(where, f"unknown field {extra[0]!r}; allowed: {', '.join(allowed)}")
            for field in allowed:
                value = item.get(field)
                if field == "answer" and value is None:
                    raise fail(where, "missing 'answer'")
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    raise fail(f"{where}.{field}", "expected a non-empty string")
            if key == "other_facts" and not item.get("question") and not item.get("name"):
                raise fail(where, "give the 'question' (or the other concept's 'name')")


def _check_template(template: str, allowed: Sequence[str], fail: Any) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise fail(f"malformed template {template!r}: {err}") from err
    for field in fields:
        if field not in allowed:
            shown = ", ".join("{" + a + "}" for a in allowed)
            raise fail(f"unknown placeholder {{{field}}} in {template!r}; allowed: {shown}")
