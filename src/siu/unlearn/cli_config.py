"""From parsed command-line options to an :class:`~siu.unlearn.config.UnlearnConfig`.

``siu unlearn`` and every cell of ``siu bench run`` read their options the same way: a ``--config``
file fills what the command line left out, the training flags become config fields, and each
method's own options (derived from the methods registry) are checked against the chosen method.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siu.errors import SiuError


def flag_of(name: str) -> str:
    """``use_token_mask`` -> ``--token-mask`` (``--no-token-mask`` too); ``npo_beta`` -> ``--npo-beta``."""
    return "--" + name.removeprefix("use_").replace("_", "-")


def method_option_fields() -> dict[str, tuple[dataclasses.Field[Any], list[str]]]:
    """Every option of every registered method, by name, with the methods that have it."""
    from siu.unlearn.config import UnlearnConfig
    from siu.unlearn.methods import METHODS, method_names, options_of

    taken = {f.name for f in dataclasses.fields(UnlearnConfig)}
    out: dict[str, tuple[dataclasses.Field[Any], list[str]]] = {}
    for name in method_names():
        for f in options_of(METHODS[name]):
            if f.name in taken:
                raise RuntimeError(f"method {name}: option {f.name!r} clashes with an UnlearnConfig field")
            if f.name in out and out[f.name][0].type != f.type:
                raise RuntimeError(f"option {f.name!r} has two types ({out[f.name][0].type}, {f.type})")
            out.setdefault(f.name, (f, []))[1].append(name)
    return out


def method_options_from_args(
    args: argparse.Namespace, method: str, others: Sequence[str] = ()
) -> dict[str, Any]:
    """The chosen method's options that were given; a given option of another method is an error,
    unless one of ``others`` (the other methods of a bench run) has it."""
    from siu.unlearn.methods import normalise_method

    method = normalise_method(method)
    others = [normalise_method(m) for m in others]
    options = {}
    for name, (_, methods) in method_option_fields().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if method not in methods:
            if any(m in methods for m in others):
                continue
            raise SiuError(f"{flag_of(name)} is an option of {', '.join(methods)}, not of {method}")
        options[name] = value
    return options


def _read_config(path: str) -> dict[str, Any]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise SiuError(f"--config {path}: cannot read ({err.strerror or err})") from None
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as err:  # yaml and json both: one clear line
        raise SiuError(
            f"--config {path}: not valid {'JSON' if file.suffix == '.json' else 'YAML'} ({err})"
        ) from None
    if not isinstance(data, dict):
        raise SiuError(f"--config {path}: expected a mapping of option names to values")
    return data


def apply_config_file(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill the options not given on the command line from ``args.config`` (keys: long option names)."""
    if not args.config:
        return
    dests = {a.dest for a in parser._actions if a.dest not in ("help", "config", "handler", "parser")}
    for key, value in _read_config(args.config).items():
        dest = str(key).removeprefix("--").replace("-", "_")
        if dest not in dests and f"use_{dest}" in dests:
            dest = f"use_{dest}"  # token_mask: false
        if dest not in dests:
            raise SiuError(f"--config {args.config}: unknown option {key!r}")
        current = getattr(args, dest, None)
        if current is None or current is False:  # not given (0 and 0.0 are given values)
            if dest in ("targets", "counts") and isinstance(value, list):
                value = tuple(value)
            setattr(args, dest, value)


def training_fields_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`UnlearnConfig` fields given by :func:`add_training_options`' flags (the rest stay at
    their defaults), as ``siu unlearn`` and every cell of ``siu bench run`` take them."""
    from siu.unlearn.config import PER_RUN_FIELDS, UnlearnConfig

    shared = [f.name for f in dataclasses.fields(UnlearnConfig) if f.name not in PER_RUN_FIELDS]
    given = {name: getattr(args, name) for name in shared if getattr(args, name, None) is not None}
    if "counts" in given:
        given["counts"] = tuple(given["counts"])
        if len(given["counts"]) != 4:
            raise SiuError(f"--counts needs four numbers (targets 1,2,3,4), got {len(given['counts'])}")
    if "targets" in given:
        given["targets"] = tuple(given["targets"])
    if "reference" in given:
        given["reference"] = given["reference"].replace("-", "_")
    if "stop_rule" in given:
        given["stop_rule"] = _settings(given["stop_rule"], "--stop-rule")
    return given


def _settings(items: Any, flag: str) -> dict[str, Any]:
    """``["patience=2", ...]`` (or a mapping from a config file) as a dict; values read as YAML."""
    import yaml

    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise SiuError(f"{flag} wants SETTING=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def unlearn_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`UnlearnConfig` of parsed ``siu unlearn`` options."""
    from siu.unlearn.config import UnlearnConfig

    method = args.method or "siu"
    return UnlearnConfig(
        method=method,
        options=method_options_from_args(args, method),
        steps=args.steps,
        seed=args.seed if args.seed is not None else 0,
        **training_fields_from_args(args),
    )


def comma_list(text: str) -> list[str]:
    """``"A, B,C"`` -> ``["A", "B", "C"]`` (a name with a comma in it cannot be given this way)."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise SiuError(f"expected a name or a comma-separated list, got {text!r}")
    return items
