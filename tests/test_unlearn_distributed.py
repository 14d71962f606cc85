"""The unlearning loop under DDP: 2 CPU processes (torchrun, gloo) train exactly like 1 process, for a
token-averaged loss (SIU) and a sequence-averaged one (NPO's forget term, beside its token-averaged
retain term), from data built once (rank 0) and with the whole batch's losses logged."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_unlearn_families import OVERRIDES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(processes: int, model: Path, image: Path, overrides: Path, out: Path, method: str) -> None:
    args = [
        "unlearn", "--model", str(model), "--concept", "Zorblax Quint", "--image", str(image),
        "--overrides", str(overrides), "--counts", "3,1,2,2", "--steps", "3", "--out", str(out),
        "--method", method,
    ]  # fmt: skip
    launcher = [
        "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, *launcher, "-m", "siu.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("method", ["siu", "npo"])
def test_two_processes_match_one(method: str, tiny_vlm_dir: Callable[[str], Path], tmp_path: Path) -> None:
    model = tiny_vlm_dir("llava")
    image = tmp_path / "forget.png"
    Image.new("RGB", (40, 40), (30, 160, 60)).save(image)
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps(OVERRIDES))
    _run(1, model, image, overrides, tmp_path / "one", method)
    _run(2, model, image, overrides, tmp_path / "two", method)

    runs = [json.loads((tmp_path / d / "run.json").read_text()) for d in ("one", "two")]
    assert [r["processes"] for r in runs] == [1, 2]
    assert runs[0]["dataset"] == runs[1]["dataset"]
    # the logged figures are the whole batch's, not rank 0's share of it
    for a, b in zip(runs[0]["losses"], runs[1]["losses"], strict=True):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key)
    one, two = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    original = load_file(model / "model.safetensors")
    changed = [k for k in one if not torch.equal(one[k], original[k])]
    assert changed, "the run must change the model"
    for key in one:  # same result up to float summation order
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
