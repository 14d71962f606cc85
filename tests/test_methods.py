"""The method registry: every registered method trains through the one loop, and its options become flags."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file

from siu.cli import main
from siu.errors import SiuError
from siu.models.adapter import Encoded
from siu.unlearn.batches import SampleMeta, batch_scales, batch_schedule, groups_of
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.methods import METHODS, Method, Part, get_method, method_names, variants
from siu.unlearn.run import unlearn


@pytest.mark.parametrize("name", method_names())
def test_every_registered_method_trains_two_steps(
    name: str, forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model = tiny_vlm_dir("llava")
    image, overrides = forget_inputs
    cfg = UnlearnConfig(
        method=name, steps=2, seed=0, overrides=str(overrides), counts=(3, 1, 2, 1), batch_size=4
    )
    run = unlearn(
        model, "Zorblax Quint", image, None, cfg, tmp_path / "out", progress=False, log=lambda *_: None
    )
    method = METHODS[name]
    assert [r["step"] for r in run["losses"]] == [1, 2]
    assert all(math.isfinite(r["loss"]) and set(method.parts) <= set(r) for r in run["losses"])
    assert run["method"] == name and set(run["config"]["options"]) == {
        f.name for f in dataclasses.fields(method.Options)
    }
    if name in ("npo", "graddiff"):  # the retain weight trained is the profile's 3, which run.json records
        weight = run["config"]["options"]["retain_weight"]
        assert weight == 3.0
        for r in run["losses"]:
            first = r["npo"] if name == "npo" else -r["forget"]  # GradDiff ascends on the forget set
            assert r["loss"] == pytest.approx(first + weight * r["retain"], rel=1e-4, abs=1e-5)
    before, after = load_file(model / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before), "the run must change the model"


def test_registry_names_data_and_variants() -> None:
    assert method_names()[0] == "siu"
    assert {"siu", "po", "ga", "ga_kl", "graddiff", "npo", "simnpo", "rmu", "mmunlearner"} <= set(METHODS)
    assert variants()["siu_no_token_mask"] == ("siu", {"use_token_mask": False})
    assert get_method("GA+KL").name == "ga_kl"
    with pytest.raises(SiuError, match="known: siu"):
        get_method("npx")
    with pytest.raises(SiuError, match="has no option 'npo_beta'"):
        UnlearnConfig(method="siu", options={"npo_beta": 0.1}).check()
    with pytest.raises(SiuError, match="npo_beta must be positive"):
        UnlearnConfig(method="npo", options={"npo_beta": 0.0}).check()
    with pytest.raises(SiuError, match="finite"):
        UnlearnConfig(method="graddiff", options={"retain_weight": float("nan")}).check()


def _encoded(n_labels: int) -> Encoded:
    return Encoded([0] * (n_labels + 1), [-100] + [1] * n_labels, [False] * (n_labels + 1), {})


def test_batch_scales_make_a_slice_exact_for_tokens_sequences_and_pairs() -> None:
    encoded = [_encoded(k) for k in (2, 3, 4, 1, 5, 2)]
    metas = [SampleMeta(True, 0, True), SampleMeta(True, 0, False), SampleMeta(True, -1), SampleMeta(False),
             SampleMeta(False), SampleMeta(True, -1)]  # fmt: skip
    everyone = list(range(6))

    class Pairs(Method):  # a DPO-like method: a mean over preference pairs, and a retain term
        parts: ClassVar[dict[str, Part]] = {
            "dpo": Part("forget", "pairs"),
            "retain": Part("retain", "tokens"),
        }

    idkdpo, npo = Pairs(), get_method("npo")()
    # two processes: a part's scale is 2 * its units in the slice / its units in the batch
    assert batch_scales(encoded, metas, everyone, [0, 1, 3], 2, idkdpo) == {"dpo": 2.0, "retain": 2 * 1 / 6}
    assert batch_scales(encoded, metas, everyone, [2, 4, 5], 2, npo) == {
        "npo": 2 * 2 / 4,
        "retain": 2 * 5 / 6,
    }
    assert batch_scales(encoded, metas, everyone, everyone, 1, npo) == {"npo": 1.0, "retain": 1.0}


def test_schedule_never_splits_a_preference_pair() -> None:
    metas = [SampleMeta(True, i // 2, i % 2 == 0) for i in range(10)] + [SampleMeta(False)] * 5
    groups = groups_of(metas)
    assert groups[:5] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]] and len(groups) == 10
    for batch in batch_schedule(15, 6, 20, seed=3, groups=groups):
        pairs = [metas[i].pair for i in batch if metas[i].pair >= 0]
        assert all(pairs.count(p) == 2 for p in pairs) and len(batch) <= 6
    assert batch_schedule(15, 4, 3, seed=0) == batch_schedule(
        15, 4, 3, seed=0, groups=[[i] for i in range(15)]
    )


def test_cli_flags_and_config_file_come_from_the_registry(
    forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path, capsys
) -> None:
    model = tiny_vlm_dir("llava")
    image, overrides = forget_inputs
    with pytest.raises(SystemExit):
        main(["unlearn", "--help"])
    helped = capsys.readouterr().out
    assert all(f"  {name} " in helped for name in method_names()) and "--npo-beta" in helped
    assert "--no-token-mask" in helped and "--retain-weight" in helped
    # a profile's own default of an option is in its help, beside the dataclass's
    assert "tiny model: graddiff 3.0, npo 3.0" in " ".join(helped.split())
    assert "tiny model: siu 2.0" in " ".join(helped.split())
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {model}\nimage: {image}\nconcept: Zorblax Quint\noverrides: {overrides}\n"
        "method: npo\nnpo_beta: 0.3\nsteps: 1\ncounts: [3, 1, 2, 1]\nbatch_size: 4\n"
    )
    assert (
        main(["unlearn", "--config", str(config), "--retain-weight", "2", "--out", str(tmp_path / "o")]) == 0
    )
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["method"] == "npo" and run["config"]["options"] == {"npo_beta": 0.3, "retain_weight": 2.0}
    capsys.readouterr()
    code = main(["unlearn", "--config", str(config), "--method", "siu", "--out", str(tmp_path / "p")])
    assert code == 2 and "--npo-beta is an option of npo, not of siu" in capsys.readouterr().err
    config.write_text("model: m\nnpo_betta: 1\n")
    code = main(["unlearn", "--config", str(config), "--out", str(tmp_path / "q")])
    assert code == 2 and "unknown option 'npo_betta'" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()


def test_rmu_adapts_only_the_layers_up_to_the_steered_one(
    forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model = tiny_vlm_dir("llava")
    image, overrides = forget_inputs
    cfg = UnlearnConfig(method="rmu", options={"rmu_layer": 0}, steps=2, overrides=str(overrides),
                        counts=(3, 1, 2, 1), batch_size=8)  # fmt: skip
    run = unlearn(
        model, "Zorblax Quint", image, None, cfg, tmp_path / "o", progress=False, log=lambda *_: None
    )
    assert run["method_state"]["layer"] == 0 and run["method_state"]["direction_norm"] > 0
    before, after = load_file(model / "model.safetensors"), load_file(tmp_path / "o" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".layers.0." in k for k in changed), changed
    with pytest.raises(SiuError, match="not a decoder layer"):
        unlearn(model, "Zorblax Quint", image, None, dataclasses.replace(cfg, options={"rmu_layer": 99}),
                tmp_path / "p", progress=False, log=lambda *_: None)  # fmt: skip


def test_mmunlearner_updates_only_its_salient_weights(
    forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model = tiny_vlm_dir("llava")
    image, overrides = forget_inputs
    cfg = UnlearnConfig(
        method="mmunlearner", steps=2, overrides=str(overrides), counts=(3, 1, 2, 1), batch_size=8
    )
    run = unlearn(
        model, "Zorblax Quint", image, None, cfg, tmp_path / "o", progress=False, log=lambda *_: None
    )
    share = run["method_state"]["trained_share"]
    assert run["config"]["lora"] is False and 0.0 < share < 1.0  # full fine-tuning, part of it masked
    before, after = load_file(model / "model.safetensors"), load_file(tmp_path / "o" / "model.safetensors")
    trained = [k for k in before if "language_model" in k or "lm_head" in k]
    changed = sum(int((before[k] != after[k]).sum()) for k in trained)
    total = sum(before[k].numel() for k in trained)
    assert 0 < changed <= share * total + 1  # masked weights are exactly as they were


def test_a_methods_profile_defaults_come_from_its_sweep_and_the_user_wins() -> None:
    from siu.unlearn.config import UnlearnConfig

    tiny, name = UnlearnConfig(method="graddiff").resolved("llava", 1_000_000)
    assert name == "tiny" and tiny.lr == 6e-4 and tiny.method_instance().options.retain_weight == 3.0
    mine, _ = UnlearnConfig(method="graddiff", lr=1e-3, options={"retain_weight": 1.0}).resolved(
        "llava", 10**6
    )
    assert mine.lr == 1e-3 and mine.method_instance().options.retain_weight == 1.0
    paper, name = UnlearnConfig(method="graddiff").resolved("llava", 7 * 10**9)
    assert name == "paper" and paper.method_instance().options.retain_weight == 1.0 and paper.lr != 6e-4
    # a subclass with its own overrides does not inherit its parent's
    mm, _ = UnlearnConfig(method="mmunlearner").resolved("llava", 1_000_000)
    assert mm.method_instance().options.retain_weight == 1.0 and mm.lora is False and mm.lr == 5e-4


def test_a_zero_on_the_command_line_wins_over_the_config_file(tmp_path: Path) -> None:
    from siu.cli import build_parser
    from siu.unlearn.cli_config import apply_config_file, training_fields_from_args

    config = tmp_path / "run.yaml"
    config.write_text("others_pictures: 7\nweight_decay: 0.1\nlr: 0.002\n")
    args = build_parser().parse_args(
        ["unlearn", "--config", str(config), "--others-pictures", "0", "--weight-decay", "0"]
    )
    apply_config_file(args, args.parser)
    given = training_fields_from_args(args)
    assert given["others_pictures"] == 0 and given["weight_decay"] == 0 and given["lr"] == 0.002


def test_a_changed_default_changes_the_digest_a_resumed_bench_run_compares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``siu bench run --resume`` refuses cells made under other defaults: the digest of a method's
    resolved defaults moves with its profile and its stopping rule's defaults, and with nothing else."""
    from siu.matrix import defaults_digest
    from siu.unlearn.methods.siu import Siu
    from siu.unlearn.stopping import StopRule

    siu, ga = defaults_digest("siu"), defaults_digest("ga")
    assert defaults_digest("siu") == siu and siu != ga  # deterministic, one per method
    tiny = {**Siu.profile_overrides["tiny"], "others_pictures": 3}
    with monkeypatch.context() as patch:
        patch.setattr(Siu, "profile_overrides", {**Siu.profile_overrides, "tiny": tiny})
        assert defaults_digest("siu") != siu and defaults_digest("ga") == ga

    @dataclasses.dataclass
    class WiderBudget(StopRule):
        drift_budget: float = 0.5

    with monkeypatch.context() as patch:
        patch.setattr("siu.unlearn.config.StopRule", WiderBudget)
        assert defaults_digest("siu") != siu
    assert defaults_digest("siu") == siu
