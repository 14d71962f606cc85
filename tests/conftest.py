import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The tiny models' weights depend on the number of CPU threads (the order of float reductions), and
# the science tests assert what one particular micro model does: every run uses the same count as
# CI (2 cores), whatever the machine has. SIU_TEST_THREADS=1 to run two suites side by side.
torch.set_num_threads(int(os.environ.get("SIU_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``family -> directory`` of a tiny saved VLM (see tiny_vlms.BUILDERS), each built once per session."""
    from tiny_vlms import BUILDERS

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = BUILDERS[family](tmp_path_factory.mktemp(family))
        return built[family]

    return get


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(world_dir, model_dir)``: the micro synthetic world and its pre-trained tiny LLaVA (about 90 s)."""
    from siu.world.build import WorldConfig, build_world
    from siu.world.pretrain import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("micro")
    world = build_world(WorldConfig.micro(seed=0), root / "world", progress=False)
    model = root / "model"
    pretrain(world, model, cfg=PretrainConfig.micro(), progress=False, log=lambda *_: None)
    return world, model


MICRO_RETAIN_CONCEPT = "tesquo-velrix"


@pytest.fixture(scope="session")
def micro_retain(
    micro_world: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """``(home, retain_dir)``: the micro world's gold retain model without tesquo-velrix, cached in ``home``
    (about a minute), as ``siu bench run --retain auto --home home`` finds it."""
    from siu.world.cache import retain_model

    world, model = micro_world
    home = tmp_path_factory.mktemp("home")
    return home, retain_model(world, model, MICRO_RETAIN_CONCEPT, home, log=lambda *_: None, progress=False)


@pytest.fixture(scope="session")
def forget_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(forget.png, overrides.json)``: one picture and the data overrides of the made-up concept
    "Zorblax Quint", for unlearning a tiny VLM without a benchmark."""
    import json

    from PIL import Image
    from test_unlearn_families import OVERRIDES

    root = tmp_path_factory.mktemp("inputs")
    Image.new("RGB", (40, 40), (30, 160, 60)).save(root / "forget.png")
    (root / "overrides.json").write_text(json.dumps(OVERRIDES))
    return root / "forget.png", root / "overrides.json"
