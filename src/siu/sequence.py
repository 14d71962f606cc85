"""Sequential unlearning: forgetting requests that arrive one after another, each from one photo.

``siu unlearn --sequential --concept A,B,C`` runs :func:`siu.unlearn.run.unlearn` once per request, each
on the model the request before it left: request 1 unlearns A from the original, request 2 unlearns B
from that result, and so on. Every intermediate model is kept in ``out/NN-<concept>/`` (a LoRA
adapter on the one before it, or a whole model under full fine-tuning), so that each can be evaluated,
deployed or rolled back; ``siu eval --model out/02-b`` loads the chain down to the original.

A request never retains a concept an earlier request forgot (no retain picture or target-4 fact is
about it) and its stopping rule does not count the earlier concepts among those it must keep. Its
reference (the KL of SIU and the other methods that have one) is the original model, not the one the
request starts from: the drift of earlier requests is pulled back instead of being kept (with
``--reference adapter_off`` it is the model the request starts from, and no second copy is loaded). With a
benchmark, every request is followed by a check on held-out pictures of every concept (evaluation
data that the unlearning never reads): did this request's concept go, did an earlier one come back,
were the others kept? ``sequence.json`` holds the table, rewritten after every request, so an
interrupted sequence keeps what it finished (``--resume`` runs the rest).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from siu.errors import SiuError
from siu.runtime import Runtime
from siu.unlearn.config import UnlearnConfig

SEQUENCE_FILE = "sequence.json"
FORGET_MAX, OTHERS_MIN = 0.05, 0.90  # the sequential goals of the many-concepts issue


def request_dir(k: int, slug: str) -> str:
    """``01-tenran-rixtiv``: request order first, so that a listing shows the sequence."""
    return f"{k:02d}-{slug}"


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "concept"


def unlearn_sequentially(
    model_path: str | Path,
    concepts: Sequence[str],
    image_paths: Sequence[str | Path] | None,
    bench_path: str | Path | None,
    cfg: UnlearnConfig,
    out: str | Path,
    adapter_only: bool | None = None,
    runtime: Runtime | None = None,
    progress: bool = True,
    check_images: int = 8,
    resume: bool = False,
    log: Callable[..., Any] = print,
) -> dict[str, Any]:
    """Forget ``concepts`` one request after another; returns what ``sequence.json`` holds.

    ``image_paths``: one forget image per concept (None: the benchmark's). ``adapter_only``: None keeps
    each request as a LoRA adapter (whole models under full fine-tuning). ``check_images``: held-out
    pictures per concept in the check after each request (0: no check). ``resume``: ``out`` holds an
    interrupted sequence with the same settings; its finished requests are kept and the rest run.
    """
    from siu.bench.load import load_benchmark
    from siu.unlearn.inputs import check_out, concept_without_bench
    from siu.unlearn.run import RUN_FILE

    start = time.perf_counter()
    out = Path(out)
    if len(concepts) < 2:
        raise SiuError("--sequential needs at least two concepts (--concept A,B,...)")
    if image_paths is not None and len(image_paths) != len(concepts):
        raise SiuError(
            f"{len(concepts)} requests need {len(concepts)} forget images (one each), got {len(image_paths)}"
        )
    if image_paths is None and bench_path is None:
        raise SiuError("give the forget images with --image or a benchmark with --bench")
    if check_images < 0:
        raise SiuError("--check-images must be 0 or more")
    bench = load_benchmark(bench_path) if bench_path is not None else None
    records = [bench.concept(c) if bench is not None else concept_without_bench(c) for c in concepts]
    if len({r.name for r in records}) < len(records):
        raise SiuError(f"a concept is requested twice: {', '.join(concepts)}")
    inputs = [Path(model_path), *([Path(bench_path)] if bench_path else []), *map(Path, image_paths or [])]
    model_dir = Path(model_path)
    if not resume and out.is_dir() and any(out.iterdir()):
        raise SiuError(
            f"--out {out} exists and is not empty; --resume continues an interrupted sequence there, or "
            "choose another directory"
        )
    check_out(out, inputs, model_dir if model_dir.exists() else None, overwrite=resume)
    # the check asks every concept of the benchmark: each needs held-out pictures and a name question
    checked = (
        bench is not None
        and check_images > 0
        and all(c.test_images and c.recognition_prompts for c in bench.concepts)
    )
    settings = {
        "model": str(model_path),
        "bench": str(bench_path) if bench_path is not None else None,
        "concepts": [r.name for r in records],
        "images": [str(p) for p in image_paths] if image_paths is not None else None,
        "config": cfg.record(),
        "adapter_only": adapter_only,
        "check_images": check_images if checked else 0,
    }
    dirs = [request_dir(k, r.slug or _slug(r.name)) for k, r in enumerate(records, start=1)]
    finished = _finished(out, settings, dirs) if resume else None

    before: dict[str, dict[str, float]] = {}
    probes: list[Any] = []
    if checked:
        assert bench is not None
        from siu.eval.forgetting import concept_scores, recognition_probes
        from siu.models.adapter import VLM

        probes = recognition_probes(bench, check_images)
        if finished is not None and finished.get("before"):
            before = finished["before"]  # the original's figures: the same model, the same pictures
        else:
            log(f"checking the original on held-out pictures of {len({p.concept for p in probes})} concepts")
            before, _ = concept_scores(VLM.load(model_path, runtime), probes)
    result: dict[str, Any] = {
        **settings,
        "method": cfg.method,
        "before": before,
        "requests": [],
        "goals": {"forget_max": FORGET_MAX, "others_min_relative": OTHERS_MIN},
    }
    current: str | Path = model_path
    out.mkdir(parents=True, exist_ok=True)
    if finished is None:  # a run killed in its first request can be resumed too
        _write_json(out / SEQUENCE_FILE, {**result, "seconds": 0.0})
    for k, record in enumerate(records, start=1):
        sub = out / dirs[k - 1]
        if finished is not None and k <= len(finished["requests"]):
            log(f"request {k} of {len(records)}: {record.name!r} finished before, kept ({sub})")
            result["requests"].append(finished["requests"][k - 1])
            current = sub
            continue
        if finished is not None and (sub / RUN_FILE).is_file():  # trained, but killed during its check
            log(f"request {k} of {len(records)}: {record.name!r} trained before, kept; checking it")
            run = json.loads((sub / RUN_FILE).read_text(encoding="utf-8"))
        else:
            log(f"request {k} of {len(records)}: forget {record.name!r} (from {current})")
            run = _run_request(
                current, record.name, image_paths[k - 1] if image_paths is not None else None, bench_path,
                cfg, sub, adapter_only, progress, runtime, log, [r.name for r in records[: k - 1]],
                model_path if k > 1 and cfg.reference != "adapter_off" else None,
            )  # fmt: skip
        row: dict[str, Any] = {
            "request": k,
            "concept": record.name,
            "slug": record.slug or None,
            "dir": sub.name,
            "saved": run["saved"],
            "steps_taken": run["steps_taken"],
            "stop_reason": (run.get("stopping") or {}).get("reason"),
        }
        if checked:
            row.update(_check(sub, runtime, probes, before, records[:k]))
        result["requests"].append(row)
        result["seconds"] = time.perf_counter() - start
        _write_json(out / SEQUENCE_FILE, result)
        log(request_line(row))
        current = sub
    result["seconds"] = time.perf_counter() - start  # this session's (a resumed run's earlier ones not)
    _write_json(out / SEQUENCE_FILE, result)
    log(sequence_table(result))
    log(f"wrote {len(records)} requests and {SEQUENCE_FILE} to {out} ({result['seconds']:.0f} s)")
    return result


def _run_request(
    model: str | Path,
    concept: str,
    image: str | Path | None,
    bench_path: str | Path | None,
    cfg: UnlearnConfig,
    out: Path,
    adapter_only: bool | None,
    progress: bool,
    runtime: Runtime | None,
    log: Callable[..., Any],
    earlier: list[str],
    reference: str | Path | None,
) -> dict[str, Any]:
    from siu.unlearn.run import unlearn

    # every request's KL holds to the original, so that the drift of earlier requests is pulled back
    # rather than frozen in (docs/results/sequential.md: kept 0.48 vs 0.25 after 8)
    return unlearn(model, concept, image, bench_path, cfg, out, adapter_only=adapter_only, progress=progress,
                   runtime=runtime, log=log, forgotten_before=earlier, reference_path=reference)  # fmt: skip


def _finished(out: Path, settings: dict[str, Any], dirs: Sequence[str]) -> dict[str, Any]:
    """The interrupted sequence in ``out`` (its sequence.json), if it was run with ``settings``: only
    requests whose directory is complete count as finished (the next one's directory may be complete
    too, when the run was killed during its check; ``dirs``: every request's directory name)."""
    try:
        earlier = json.loads((out / SEQUENCE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiuError(
            f"--resume: {out} holds no {SEQUENCE_FILE}; nothing to resume (leave out --resume)"
        ) from None
    except (OSError, ValueError) as err:
        raise SiuError(f"--resume: {out}/{SEQUENCE_FILE} is unreadable ({err})") from None
    differ = sorted(k for k, v in settings.items() if earlier.get(k) != v)
    if differ:
        raise SiuError(
            f"--resume: {out} was run with other settings ({', '.join(differ)}); use another --out"
        )
    requests = earlier.get("requests") or []
    done = []
    for row in requests:  # a request counts only with its saved model (it is written last, atomically)
        if not (out / str(row.get("dir")) / "run.json").is_file():
            break
        done.append(row)
    kept = {r["dir"] for r in done} | set(dirs[len(done) : len(done) + 1])  # (hidden partials: cleaned up)
    stray = [
        p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in kept
    ]
    if stray:
        raise SiuError(f"--resume: {out} holds {', '.join(sorted(stray))}, which no finished request wrote")
    return {**earlier, "requests": done}


def _check(
    model: Path,
    runtime: Runtime | None,
    probes: list[Any],
    before: dict[str, dict[str, float]],
    gone: Sequence[Any],
) -> dict[str, Any]:
    """Recognition and facts of every concept after a request, on held-out pictures."""
    from siu.eval.forgetting import concept_scores
    from siu.models.adapter import VLM

    after, _ = concept_scores(VLM.load(model, runtime), probes)
    slugs = [r.slug for r in gone]
    kept = [s for s in before if s not in slugs]
    base = sum(before[s]["recognition"] for s in kept)
    earlier = {s: after[s]["recognition"] for s in slugs[:-1]}
    return {
        "after": after,
        "forget": after[slugs[-1]]["recognition"],
        "earlier_max": max(earlier.values()) if earlier else None,
        "earlier_back": sorted(s for s, v in earlier.items() if v > FORGET_MAX),
        "facts_min": min((after[s]["facts"] for s in slugs if "facts" in after[s]), default=None),
        "others_relative": sum(after[s]["recognition"] for s in kept) / base if base else None,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` in one rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def request_line(row: dict[str, Any]) -> str:
    line = f"request {row['request']} ({row['concept']}): {row['steps_taken']} steps"
    if "forget" in row:
        back = f", came back: {', '.join(row['earlier_back'])}" if row["earlier_back"] else ""
        line += (
            f"; recognised {row['forget']:.3f}, earlier max {_fmt(row['earlier_max'])}{back}, "
            f"others {_fmt(row['others_relative'])} of the original's, facts min {_fmt(row['facts_min'])}"
        )
    return line


def sequence_table(result: dict[str, Any]) -> str:
    """One row per request: what it forgot, whether an earlier concept came back, what it kept."""
    from siu.tables import format_table

    rows = []
    for r in result["requests"]:
        cells = [r["request"], r["concept"], r["steps_taken"]]
        if "forget" in r:
            ok = (
                r["forget"] <= FORGET_MAX
                and (r["earlier_max"] is None or r["earlier_max"] <= FORGET_MAX)
                and (r["others_relative"] is None or r["others_relative"] >= OTHERS_MIN)
            )
            cells += [_fmt(r["forget"]), _fmt(r["earlier_max"]), _fmt(r["others_relative"]),
                      _fmt(r["facts_min"]), "yes" if ok else "no"]  # fmt: skip
        rows.append(cells)
    head = ["request", "concept", "steps"]
    if result["check_images"]:
        head += ["recognised", "earlier max", "others kept", "facts min", "goals met"]
        note = (
            f"held-out pictures, {result['check_images']} per concept; goals: recognised and earlier max <= "
            f"{FORGET_MAX}, others kept >= {OTHERS_MIN} of the original's recognition"
        )
    else:
        note = "no check on held-out pictures (no benchmark, or --check-images 0)"
    return format_table(head, rows) + "\n" + note
