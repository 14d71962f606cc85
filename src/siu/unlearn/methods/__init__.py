"""The registry of unlearning methods: one module per method in this package, found automatically.

``get_method("npo")`` returns the class; ``variants()`` the named configurations that ``siu bench
run --methods`` and the acceptance script accept (every method under its own name, plus ablations
such as ``siu_no_token_mask``, which are a method with some options set, not code).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from siu.errors import SiuError
from siu.unlearn.methods.base import METHODS, LossInputs, Method, Part, make_options, options_of, register

__all__ = [
    "METHODS",
    "LossInputs",
    "Method",
    "Part",
    "get_method",
    "make_options",
    "method_names",
    "normalise_method",
    "options_of",
    "register",
    "variants",
]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def method_names() -> list[str]:
    """Registered methods: SIU and the paper's baselines first, then the others by name."""
    return sorted(METHODS, key=lambda n: (METHODS[n].rank, n))


def profile_option_defaults(option: str, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per profile, the methods whose ``profile_overrides`` set ``option``, and the value they set."""
    found: dict[str, dict[str, Any]] = {}
    for name in methods:
        for profile, values in METHODS[name].profile_overrides.items():
            if option in values.get("options", {}):
                found.setdefault(profile, {})[name] = values["options"][option]
    return found


def normalise_method(method: str) -> str:
    """``"GA+KL"``, ``"ga-kl"`` -> ``"ga_kl"``; an unknown name is a :class:`SiuError` naming the known ones."""
    key = method.strip().lower().replace("+", "_").replace("-", "_")
    if key not in METHODS:
        raise SiuError(f"unknown method {method!r}; known: {', '.join(method_names())}")
    return key


def get_method(name: str) -> type[Method]:
    return METHODS[normalise_method(name)]


def variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """``name -> (method, options)``: every method under its own name, then each method's named variants."""
    out: dict[str, tuple[str, dict[str, Any]]] = {name: (name, {}) for name in method_names()}
    for name in method_names():
        for variant, options in getattr(METHODS[name], "variants", {}).items():
            out[variant] = (name, dict(options))
    return out
