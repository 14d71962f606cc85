"""``siu unlearn``: unlearn one concept from a VLM with a registered method, from one image.

The flow of :func:`unlearn`:

1. check the inputs (method and options, benchmark, concept, forget image, override file, output
   directory) before any model is loaded, so that a typo costs nothing;
2. load the original model with :meth:`VLM.load` and pick the training profile of its size
   (:func:`siu.unlearn.config.profile_for`); every profile value can be overridden in the config;
3. build the method's data (:func:`siu.unlearn.data.build_data_of_kind`); the original model fills in
   what the records lack (facts, the visible description);
4. dry run: print the data and stop. Otherwise prepare the training (:mod:`siu.unlearn.preparation`:
   the trained weights, the reference if the method needs one, never a second model, and the
   batches), train with :func:`siu.training.train` (the one loop) and write the model, the processor
   and ``run.json`` atomically.

Under ``accelerate launch`` the model is wrapped by ``Accelerator.prepare_model`` (DDP when there are
several processes: ``train()``'s ``loss.backward()`` then all-reduces the gradients); every process
trains on its slice of each batch and only the main process prints and writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from siu.bench.load import Benchmark
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.models.adapter import VLM
from siu.outputs import versions, write_atomically
from siu.runtime import CPU, Runtime
from siu.training import TrainLog, train
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.data import build_data_of_kind
from siu.unlearn.inputs import check_names_encodable, check_out, read_request
from siu.unlearn.losses import masked_pieces, vocab_mask_for_names
from siu.unlearn.methods import normalise_method
from siu.unlearn.preparation import make_loss_fn, prepare_training, sample_meta, train_config
from siu.unlearn.reference import unwrap
from siu.unlearn.samples import DataConfig, UnlearnSample, dataset_record, format_dataset
from siu.unlearn.stopping import StopState, build_stop_data, check_row, measure
from siu.unlearn.views import with_views

RUN_FILE = "run.json"


def check_finite_weights(
    model: torch.nn.Module, what: str, then: str = "nothing was written (lower --lr)"
) -> None:
    """Raise :class:`SiuError` if any weight is NaN or infinite (the loss can stay finite while they are not)."""
    bad = sum(int((~torch.isfinite(p)).sum()) for p in model.parameters() if p.is_floating_point())
    if bad:
        total = sum(p.numel() for p in model.parameters())
        raise SiuError(f"{what} has {bad:,} non-finite weights of {total:,}: it is broken; {then}")


# ----------------------------------------------------------------------------- records and printing
def loss_table(losses: Sequence[dict[str, float]], keys: Sequence[str]) -> str:
    from siu.tables import format_table

    rows = [
        [
            int(r["step"]),
            f"{r['loss']:.4f}",
            *(f"{r[k]:.4f}" if k in r else "" for k in keys),
            f"{r['lr']:.2e}",
        ]
        for r in losses
    ]
    return format_table(["step", "loss", *keys, "lr"], rows)


def _step_row(record: dict[str, float], keys: Sequence[str]) -> str:
    cells = [f"{int(record['step']):>4}", f"{record['loss']:>9.4f}"]
    cells += [f"{record[k]:>9.4f}" if k in record else f"{'':>9}" for k in keys]
    cells.append(f"{record['lr']:>9.2e}")
    return "  ".join(cells)


def _relpath(target: Path, start: str | Path | None) -> str | None:
    """``target`` relative to ``start`` (None where there is none: no output, another drive)."""
    if start is None or not target.exists():
        return None
    try:
        return os.path.relpath(target.resolve(), Path(start).resolve())
    except ValueError:
        return None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass


def _accelerator(cpu: bool) -> Any:
    try:
        from accelerate import Accelerator, DistributedDataParallelKwargs
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return None
    # A process whose slice of a batch has no image leaves the vision weights unused in that step.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    # Several processes without a GPU (torchrun / accelerate launch on CPU): accelerate only sets up
    # gloo when told that the processes are CPU processes.
    cpu_processes = cpu or (not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    return Accelerator(cpu=cpu_processes, kwargs_handlers=handlers)


def _shared(accelerator: Any, build: Callable[[], Any]) -> Any:
    """``build()`` on the main process only, its result sent to every other (one set of data per run)."""
    if accelerator is None or accelerator.num_processes == 1:
        return build()
    from accelerate.utils import broadcast_object_list

    box = [build() if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


# ----------------------------------------------------------------------------- the run
def data_config(
    cfg: UnlearnConfig,
    overrides: dict[str, Any] | None,
    concepts: Sequence[Concept] = (),
    earlier: Sequence[Concept] = (),
) -> DataConfig:
    """The data settings of a resolved config; ``concepts``: every concept of a joint run (two or more);
    ``earlier``: concepts forgotten by earlier requests (sequential unlearning), never retained either."""
    gone = [*(concepts if len(concepts) > 1 else ()), *earlier]
    return DataConfig(
        counts=tuple(cfg.counts),  # type: ignore[arg-type]
        seed=cfg.seed,
        targets=tuple(cfg.targets),
        overrides=overrides,
        identities=cfg.identities or 1,
        others_pictures=cfg.others_pictures or 0,
        forgotten=tuple(name for c in gone for name in c.names),
    )


def build_data(
    cfg: UnlearnConfig,
    concept: Concept,
    image: Any,
    bench: Benchmark | None,
    overrides: dict[str, Any] | None,
    original: VLM | None,
) -> list[UnlearnSample]:
    """The method's data from the one forget image, spread over the profile's views of it."""
    return build_joint_data(cfg, [concept], [image], bench, overrides, original)


def build_joint_data(
    cfg: UnlearnConfig,
    concepts: Sequence[Concept],
    images: Sequence[Any],
    bench: Benchmark | None,
    overrides: dict[str, Any] | None,
    original: VLM | None,
    earlier: Sequence[Concept] = (),
) -> list[UnlearnSample]:
    """The method's data for each concept from its one forget image, concept after concept: retain
    data (target 4, other concepts on their pictures) never about a concept of the run (or one
    ``earlier`` forgotten), and each concept's made-up names sharing no word with those of the
    concepts before it."""
    method = cfg.method_instance()
    out: list[UnlearnSample] = []
    taken: list[str] = []
    for concept, image in zip(concepts, images, strict=True):
        data_cfg = dataclasses.replace(
            data_config(cfg, overrides, concepts, earlier), taken_names=tuple(taken)
        )
        samples = build_data_of_kind(
            method.data, concept, image, bench, data_cfg, original, stream=method.name
        )
        taken += [s.sample.target_phrase for s in samples if s.target == 1 and s.sample.target_phrase]
        # Views come last, so that what is built from the image (the model's own naming prefix, its
        # likeliest made-up names, the visible description) is built from the forget image itself.
        out += with_views(samples, image, cfg.views or 1, cfg.seed, bool(cfg.view_background))
    return out


def unlearn(
    model_path: str | Path,
    concept: str | Sequence[str],
    image_path: str | Path | Sequence[str | Path] | None,
    bench_path: str | Path | None,
    cfg: UnlearnConfig,
    out: str | Path | None,
    overwrite: bool = False,
    adapter_only: bool | None = False,
    dry_run: bool = False,
    progress: bool = True,
    runtime: Runtime | None = None,
    log: Callable[..., Any] = print,
    observe: Callable[[int, VLM], None] | None = None,
    forgotten_before: Sequence[str] = (),
    reference_path: str | Path | None = None,
) -> dict[str, Any]:
    """Unlearn ``concept`` from the model at ``model_path``; write the result to ``out``.

    ``concept`` may be several concepts, forgotten jointly in one run (one forget image each:
    ``image_path`` then holds one path per concept, or the benchmark's forget images are used).

    Returns the run record (what ``run.json`` holds); a dry run (``out`` may be None) returns the data
    set and config without training or writing anything. ``adapter_only``: save the LoRA adapter
    instead of the merged model (None: the adapter when the run trains LoRA). ``runtime``: the device
    and dtype (default: the CPU in float32; under several processes each process takes the
    accelerator's device). ``observe(step, vlm)``: called after every step with the model as it is
    then (a hook for studies, e.g. ``scripts/stop_study.py``; it must not change the model).
    ``forgotten_before``: concepts an earlier request made the model forget (sequential unlearning,
    :mod:`siu.sequence`): no retain data and no stopping-rule budget are about them.
    ``reference_path``: the model the method's reference holds to (cached logits), when it is not the
    model trained (a sequence's original).
    """
    start = time.perf_counter()
    runtime = (runtime or CPU).check(training=True)
    cfg.check()
    cfg = dataclasses.replace(cfg, method=normalise_method(cfg.method))
    if adapter_only and cfg.lora is False:
        raise SiuError("--adapter-only needs LoRA; full fine-tuning has no adapter to save")
    if runtime.load_in is not None and adapter_only is False:
        raise SiuError(
            f"a {runtime.load_in} base cannot be merged with the LoRA weights without loss: add --adapter-only "
            "(siu eval takes the adapter directory as --model)"
        )
    if runtime.load_in is not None and cfg.lora is False:
        raise SiuError(f"a {runtime.load_in} base cannot be fine-tuned fully; train LoRA (--lora)")
    if out is None and not dry_run:
        raise SiuError("--out is required (only a dry run writes nothing)")
    out = Path(out) if out is not None else None
    model_dir = Path(model_path)

    # 1. inputs, cheapest first
    request = read_request(model_dir, concept, image_path, bench_path, cfg.overrides, forgotten_before)
    bench, records, earlier, images = request.bench, request.records, request.earlier, request.images
    image_names, overrides = request.image_names, request.overrides
    record, image_name = records[0], image_names[0]
    joint = len(records) > 1
    if out is not None:
        check_out(out, request.inputs, model_dir if model_dir.exists() else None, overwrite)

    # 2. model and profile, on the device from the start: building the data runs the model
    accelerator = None if dry_run else _accelerator(cpu=runtime.torch_device.type == "cpu")
    rank, world = 0, 1
    if accelerator is not None:
        rank, world = accelerator.process_index, accelerator.num_processes
    if world > 1:
        runtime = dataclasses.replace(runtime, device=str(accelerator.device))
    _seed_everything(cfg.seed)
    vlm = VLM.load(model_path, runtime)
    n_params = sum(p.numel() for p in vlm.model.parameters())
    model_type = str(getattr(vlm.model.config, "model_type", ""))
    batch_given = cfg.batch_size is not None
    cfg, profile = cfg.resolved(model_type, n_params)
    method = cfg.method_instance()  # built once resolved: the profile may set the method's options
    if joint and not batch_given:  # each concept as many samples per step as it would have alone
        assert cfg.batch_size is not None
        cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size * len(records))
    if adapter_only and not cfg.lora:
        raise SiuError(f"--adapter-only needs LoRA, but the {profile} profile fine-tunes fully; add --lora")
    if adapter_only is None:
        adapter_only = bool(cfg.lora)
    if cfg.reference == "adapter_off" and not cfg.lora:
        raise SiuError(f"reference 'adapter_off' needs LoRA, but the {profile} profile fine-tunes fully")
    assert cfg.steps is not None and cfg.batch_size is not None and cfg.lr is not None

    vocab_mask = None
    pieces: list[str] | None = None  # what K_V masks, shown in the dry run and kept in run.json
    # a joint run masks every forgotten name, and a sequence's request also those its earlier requests
    # forgot: the KL's reference (the original) still names them, and unmasked it taught them back
    names = [name for r in (*records, *earlier) for name in r.names]
    if method.vocab_mask:
        vocab_size = vlm.model.get_output_embeddings().weight.shape[0]
        if getattr(method.options, "use_vocab_mask", True):
            check_names_encodable(vlm.tokenizer, names)
            pieces = masked_pieces(vlm.tokenizer, names, vocab_size)
        vocab_mask = vocab_mask_for_names(vlm.tokenizer, names, vocab_size)

    # 3. data (the original model answers what the records lack), built once under several processes
    samples = _shared(
        accelerator, lambda: build_joint_data(cfg, records, images, bench, overrides, vlm, earlier)
    )
    rule = cfg.stop_settings()
    stop_data = None
    if rule.mode != "never" and not dry_run:  # the original's answers to the rule's checks
        stop_data = _shared(
            accelerator,
            lambda: build_stop_data(
                rule,
                records,
                images,
                bench,
                data_config(cfg, overrides, records, earlier),
                vlm,
                {s.sample.prompt for s in samples},
            ),
        )
    summary = {
        "method": method.name,
        "profile": profile,
        "config": cfg.record(),
        "concept": {"name": record.name, "aliases": record.aliases, "slug": record.slug or None},
        "concepts": [{"name": r.name, "aliases": r.aliases, "slug": r.slug or None} for r in records],
        "forgotten_before": [e.name for e in earlier],
        "reference_model": str(reference_path) if reference_path is not None and method.reference else None,
        "overrides_data": overrides,
        "dataset": dataset_record(samples),
        "vocab_mask_pieces": pieces,
    }
    if dry_run:
        log(format_dataset(samples))
        if pieces is not None:
            log(f"vocabulary mask (K_V): {len(pieces)} pieces: {', '.join(map(repr, pieces))}")
        log(
            f"dry run: {len(samples)} samples, {method.name} with the {profile} profile "
            f"({'LoRA r=' + str(cfg.lora_r) if cfg.lora else 'full fine-tuning'}, {cfg.steps} steps, "
            f"lr {cfg.lr:g}, batch {min(cfg.batch_size, len(samples))}); nothing trained or written"
        )
        return {"dry_run": True, **summary}

    # 4. train
    main = rank == 0
    say = log if main else (lambda *_a, **_k: None)

    _seed_everything(cfg.seed)
    anchor = None
    if reference_path is not None and method.reference:
        if cfg.reference != "cached":
            raise SiuError("a reference model other than the one trained needs --reference cached")
        anchor = VLM.load(reference_path, runtime).model  # only for the cached logits, then let go
    prepared = prepare_training(
        vlm, cfg, method, [s.sample for s in samples], sample_meta(samples), rank, world, runtime.load_in,
        reference_model=anchor,
    )  # fmt: skip
    del anchor
    model, steps, reference, layer = prepared.model, prepared.steps, prepared.reference, prepared.layer
    if world > 1:  # DDP; one process needs no wrapper (and accelerate would move the model)
        model = accelerator.prepare_model(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    keys = list(method.parts)
    say(
        f"unlearning {', '.join(repr(r.name) for r in records)} with {method.name} ({profile} profile, "
        f"{'LoRA r=' + str(cfg.lora_r) if cfg.lora else 'full fine-tuning'}, {trainable:,} of {n_params:,} "
        f"parameters trained): {len(samples)} samples, "
        + (f"at most {cfg.steps} steps (--stop auto)" if rule.mode == "auto" else f"{cfg.steps} steps")
    )
    if progress:
        say("  ".join([f"{'step':>4}", f"{'loss':>9}", *(f"{k:>9}" for k in keys), f"{'lr':>9}"]))
    state = StopState(rule) if stop_data is not None else None
    if stop_data is not None and not stop_data.own.questions:
        say(
            f"stopping rule: the original model does not name {'any of them' if joint else repr(record.name)} on "
            "any check view of the forget image, so the rule cannot see it forgotten; it stops only on its "
            "budgets or the cap"
        )

    def on_step(step: int, rec: dict[str, float]) -> bool:
        if progress:
            say(_step_row(rec, keys))
        if observe is not None:
            observe(step, vlm)
        if state is None or stop_data is None:
            return False
        stop = state.decide(step, measure(stop_data, vlm))
        if world > 1:  # every process stops at the same step (the main process decides)
            from accelerate.utils import broadcast_object_list

            box = [stop]
            broadcast_object_list(box, from_process=0)
            stop = bool(box[0])
        if progress:
            say(f"{'':>4}  {check_row(state.checks[-1])}")
        return stop

    train_log: TrainLog = train(
        model,
        iter(steps),
        make_loss_fn(method, reference, vocab_mask, layer),
        train_config(cfg),
        desc=f"unlearning ({method.name})",
        progress=False,
        on_step=on_step,
        reduce=(lambda t: accelerator.reduce(t.to(accelerator.device), "mean").cpu()) if world > 1 else None,
    )
    if not progress:
        say(loss_table(train_log.losses, keys))
    stopping = None
    if state is not None and stop_data is not None:
        stopping = {
            **state.record(cfg.steps),
            "check_questions": len(stop_data.own.questions),
            "other_concepts_checked": len(stop_data.others.questions),
            "original": stop_data.original,
        }
    if stopping is not None and rule.mode == "auto":
        say(f"stopped after step {stopping['steps_taken']} of at most {cfg.steps}: {stopping['reason']}")

    # 5. write (main process only), never a broken model
    trained = unwrap(model)
    check_finite_weights(trained, "the trained model")  # every process stops alike
    run = {
        **summary,
        "model": str(model_path),
        "model_abspath": str(model_dir.resolve()) if model_dir.exists() else None,
        # found again when the output and its model move together (a sequence's chain of adapters)
        "model_relpath": _relpath(model_dir, out),
        "model_type": model_type,
        "parameters": n_params,
        "trainable_parameters": trainable,
        "bench": str(bench_path) if bench_path is not None else None,
        "image": image_name,
        "images": image_names,
        "seed": cfg.seed,
        "losses": train_log.losses,
        "steps_taken": len(train_log.losses),
        "stopping": stopping,
        "method_state": method.record(),
        "train_seconds": train_log.seconds,
        "saved": "adapter" if adapter_only else ("merged LoRA model" if cfg.lora else "model"),
        "processes": world,
        "runtime": runtime.record(),
        "versions": versions(),
    }
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if main:
        assert out is not None
        run["wall_seconds"] = time.perf_counter() - start

        def write(tmp: Path) -> None:
            if cfg.lora and not adapter_only:
                merged = trained.merge_and_unload()  # type: ignore[operator]
                check_finite_weights(merged, "the merged model")  # LoRA's product can overflow a bf16 base
                merged.save_pretrained(tmp, safe_serialization=True)
            else:
                trained.save_pretrained(tmp, safe_serialization=True)
            vlm.processor.save_pretrained(tmp)
            (tmp / RUN_FILE).write_text(
                json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )

        write_atomically(out, write, overwrite=overwrite)
        say(f"saved {run['saved']} to {out} ({run['wall_seconds']:.1f} s)")
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return run
