"""Data flows one way: no module imports a layer above its own (the CLI modules and the demo sit on top)."""

from __future__ import annotations

import ast
from pathlib import Path

import siu

# bottom to top; a module may import its own layer and those below
LAYERS = {
    **dict.fromkeys(("errors", "outputs", "names", "tables", "runtime", "memory"), 0),
    "bench": 1,
    **dict.fromkeys(("models", "training"), 2),
    "world": 3,
    "unlearn": 4,
    "eval": 5,
    "report": 6,
    **dict.fromkeys(("matrix", "demo", "sequence", "forget_sets"), 7),
    "cli": 8,
}


def test_no_module_imports_a_layer_above_it() -> None:
    root = Path(siu.__file__).parent
    upward = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__") and len(parts) == 1:
            continue
        own = parts[0]
        assert own in LAYERS, f"{path}: put its package in a layer of this test"
        if parts[-1] == "cli":  # a command's CLI module is the top layer of its package
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("siu."):
                target = node.module.split(".")
                if LAYERS[target[1]] > LAYERS[own] or target[-1] == "cli":
                    upward.append(f"{'/'.join(parts)} imports {node.module}")
    assert not upward, "; ".join(upward)
