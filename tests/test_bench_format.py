"""The MMUBench on-disk format: loading, validation messages, `siu bench show/validate`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from siu.bench.images import BenchFileError, open_image, resolve_inside
from siu.bench.load import Benchmark, load_benchmark, write_benchmark_json
from siu.bench.show import show_benchmark
from siu.bench.validate import Problem, format_problems, validate_benchmark
from siu.errors import BenchmarkError

CONCEPTS = [
    ("donald-trump", "Donald Trump", ["Trump"], "person"),
    ("hello-kitty", "Hello Kitty", ["Kitty White"], "cartoon"),
    ("facebook", "Facebook", [], "logo"),
]


def _png(path: Path, seed: int, size: int = 4) -> None:
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size))
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size * size)])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")


def _concept(name: str, aliases: list[str], category: str, n_images: int) -> dict[str, Any]:
    return {
        "name": name,
        "aliases": aliases,
        "category": category,
        "facts": [{"key": "origin", "question": f"Where is {name} from?", "answer": "From X.", "value": "X"}],
        "special_tokens": [name, name.split()[0]],
        "images": [{"file": f"images/{i:03d}.png", "forget": i == 0} for i in range(n_images)],
        "recognition_prompts": [
            {"prompt": "Who is this?", "type": "name", "targets": [name, *aliases]},
            {"prompt": f"Is this {name}?", "type": "yesno", "targets": ["yes"]},
        ],
        "multilingual_prompts": [
            {"prompt": "¿Quién es?", "type": "name", "targets": [name], "language": "es"}
        ],
        "multihop": [{"question": "Where is the one in the picture from?", "answers": ["X"]}],
        "fact_questions": [{"question": f"Where is {name} from?", "answers": ["X"], "key": "origin"}],
        "appearance": "plain",
    }


def make_benchmark(root: Path, n_images: int = 3) -> Path:
    """A valid benchmark with three concepts, ``n_images`` tiny PNGs each and a specificity file."""
    for k, (slug, name, aliases, category) in enumerate(CONCEPTS):
        for i in range(n_images):
            _png(root / "concepts" / slug / "images" / f"{i:03d}.png", seed=100 * k + i)
        write_benchmark_json(
            root / "concepts" / slug / "concept.json", _concept(name, aliases, category, n_images)
        )
    spec = [{"image": "concepts/facebook/images/001.png", "question": "What colour?", "answers": ["blue"]}]
    write_benchmark_json(root / "specificity.json", {"items": spec})
    manifest = {"name": "tiny", "concepts": [c[0] for c in CONCEPTS], "format": "mmubench", "version": 1}
    write_benchmark_json(root / "manifest.json", manifest)
    return root


def edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    write_benchmark_json(path, data)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def only_error(root: Path) -> Problem:
    found = errors(validate_benchmark(root))
    assert len(found) == 1, found
    return found[0]


def run_cli(argv: list[str]) -> int:
    if importlib.util.find_spec("siu.world.cli") is not None:
        from siu.cli import main

        return main(argv)
    # siu.world.cli (imported by build_parser) not written yet: call the handlers main() dispatches to.
    from siu import cli

    handlers = {"validate": cli._cmd_bench_validate, "show": cli._cmd_bench_show}
    return handlers[argv[1]](argparse.Namespace(dir=argv[2], json="--json" in argv))


KITTY = "concepts/hello-kitty/concept.json"


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return make_benchmark(tmp_path / "bench")


# --- valid benchmarks ---------------------------------------------------------------------------


def test_valid_benchmark_has_no_errors(bench: Path) -> None:
    problems = validate_benchmark(bench)
    assert errors(problems) == []
    # Three images per concept is allowed but below MMUBench's 50: one warning per concept.
    assert [(p.file, p.field) for p in problems] == [
        (f"concepts/{slug}/concept.json", "images") for slug, *_ in CONCEPTS
    ]
    report = format_problems(bench, problems)
    assert report.splitlines()[-1] == "OK: 3 concepts, 9 images, 0 errors, 3 warnings"


def test_show_json_lists_names_categories_and_counts(bench: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = [(name, category, 3) for _, name, _, category in CONCEPTS]
    rows = json.loads(show_benchmark(bench, as_json=True))
    assert [(r["name"], r["category"], r["images"]) for r in rows] == expected
    assert rows[0]["slug"] == "donald-trump" and rows[0]["forget_image"] == "images/000.png"
    assert rows[0]["recognition_prompts"] == 2 and rows[0]["multihop"] == 1

    assert run_cli(["bench", "show", str(bench), "--json"]) == 0
    cli_rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["category"], r["images"]) for r in cli_rows] == expected


def test_show_table(bench: Path) -> None:
    lines = show_benchmark(bench).splitlines()
    assert lines[0].startswith("tiny: 3 concepts")
    assert lines[2].split()[:3] == ["name", "category", "images"]
    assert "Hello Kitty" in lines[5] and lines[-1].split()[:2] == ["total", "9"]


def test_cli_validate_exit_codes(bench: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["bench", "validate", str(bench)]) == 0
    assert "OK: 3 concepts" in capsys.readouterr().out
    (bench / "concepts/facebook/images/002.png").unlink()
    assert run_cli(["bench", "validate", str(bench)]) == 1
    out = capsys.readouterr().out
    assert "concepts/facebook/concept.json: images[2].file: images/002.png: image file not found" in out
    assert out.splitlines()[-1] == "INVALID: 1 error, 3 warnings"


def test_load_gives_typed_records_and_lookup(bench: Path) -> None:
    b = load_benchmark(bench / "manifest.json")  # the manifest itself is accepted too
    assert isinstance(b, Benchmark) and b.manifest.name == "tiny"
    kitty = b.concept("kitty white")  # alias, any case
    assert kitty is b.concept("HELLO-KITTY") is b.concept("Hello Kitty")
    assert kitty.forget_image.file == "images/000.png" and len(kitty.test_images) == 2
    assert b.image_path(kitty, kitty.images[1]) == (bench / "concepts/hello-kitty/images/001.png").resolve()
    assert b.load_image(kitty, kitty.forget_image).mode == "RGB"
    assert b.specificity[0].kind == "vqa" and b.load_specificity_image(b.specificity[0]).size == (4, 4)


def test_unknown_concept_suggests_close_names(bench: Path) -> None:
    b = load_benchmark(bench)
    with pytest.raises(BenchmarkError, match=r"unknown concept 'Helo Kity'; did you mean: Hello Kitty\?"):
        b.concept("Helo Kity")
    with pytest.raises(BenchmarkError, match="available: Donald Trump, Hello Kitty, Facebook"):
        b.concept("zzzz")


def test_write_benchmark_json_is_deterministic(tmp_path: Path) -> None:
    data = {"b": ["é", 1], "a": None}
    write_benchmark_json(tmp_path / "x.json", data)
    first = (tmp_path / "x.json").read_bytes()
    write_benchmark_json(tmp_path / "x.json", data)
    assert (
        (tmp_path / "x.json").read_bytes()
        == first
        == '{\n  "b": [\n    "é",\n    1\n  ],\n  "a": null\n}\n'.encode()
    )
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


# --- broken benchmarks: each problem names the file and the field --------------------------------


def test_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    problem = only_error(tmp_path / "empty")
    assert (problem.file, problem.field) == ("manifest.json", "")
    assert "not found" in problem.message
    with pytest.raises(BenchmarkError, match="manifest.json: file not found"):
        load_benchmark(tmp_path / "empty")


def test_json_syntax_error_gives_line_and_column(bench: Path) -> None:
    (bench / KITTY).write_text('{\n  "name": "Hello Kitty",\n  "category" "cartoon"\n}\n', encoding="utf-8")
    problem = only_error(bench)
    assert problem.file == KITTY
    assert problem.message.startswith("invalid JSON at line 3, column 14")
    with pytest.raises(BenchmarkError, match=f"{KITTY}: invalid JSON at line 3"):
        load_benchmark(bench)


def test_wrong_format_and_version(bench: Path) -> None:
    edit_json(bench / "manifest.json", lambda m: m.update(format="coco"))
    assert (only_error(bench).field, only_error(bench).message) == (
        "format",
        'expected "mmubench", got "coco"',
    )
    edit_json(bench / "manifest.json", lambda m: m.update(format="mmubench", version=7))
    assert only_error(bench).message.startswith("unsupported version 7")


def test_duplicate_concept_folder_in_manifest(bench: Path) -> None:
    edit_json(bench / "manifest.json", lambda m: m["concepts"].extend(["hello-kitty", "mario"]))
    found = [(p.file, p.field, p.message) for p in errors(validate_benchmark(bench))]
    assert found == [
        ("manifest.json", "concepts[3]", "concept folder 'hello-kitty' is listed twice (also concepts[1])"),
        ("manifest.json", "concepts[4]", "concept folder concepts/mario not found"),
    ]


def test_unknown_field_is_a_warning_with_a_suggestion(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c["images"][1].update(forgot=True))
    problems = validate_benchmark(bench)
    assert errors(problems) == []
    assert (
        Problem(KITTY, "images[1].forgot", "unknown field (ignored); did you mean 'forget'?", "warning")
        in problems
    )


def test_missing_field_and_wrong_type(bench: Path) -> None:
    def change(c: dict[str, Any]) -> None:
        del c["name"]
        c["images"][1]["forget"] = "no"

    edit_json(bench / KITTY, change)
    found = {(p.file, p.field): p.message for p in errors(validate_benchmark(bench))}
    assert found[(KITTY, "name")] == "missing required field"
    assert found[(KITTY, "images[1].forget")] == "expected true or false, got a string"


def test_unknown_category(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c.update(category="cartoons"))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "category")
    assert "unknown category 'cartoons'" in problem.message and "did you mean 'cartoon'" in problem.message


def test_two_forget_images(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c["images"][2].update(forget=True))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "images")
    assert problem.message.startswith("2 images have forget=true (images[0], images[2])")


def test_no_forget_image(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c["images"][0].update(forget=False))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "images")
    assert problem.message.startswith("no image has forget=true")


def test_image_path_escaping_with_dotdot(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c["images"][1].update(file="../facebook/images/001.png"))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "images[1].file")
    assert "escapes" in problem.message


def test_absolute_image_path(bench: Path) -> None:
    target = str((bench / "concepts/hello-kitty/images/001.png").resolve())
    edit_json(bench / KITTY, lambda c: c["images"][1].update(file=target))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "images[1].file")
    assert "must be relative" in problem.message


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_out_of_the_benchmark(bench: Path, tmp_path: Path) -> None:
    _png(tmp_path / "outside.png", seed=1)
    link = bench / "concepts/hello-kitty/images/001.png"
    link.unlink()
    link.symlink_to(tmp_path / "outside.png")
    assert "escapes" in only_error(bench).message


def test_corrupt_image(bench: Path) -> None:
    (bench / "concepts/hello-kitty/images/001.png").write_bytes(random.Random(0).randbytes(300))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "images[1].file")
    assert problem.message.startswith("images/001.png: image is corrupt or not a supported image (cannot")
    assert str(problem) == f"{KITTY}: images[1].file: {problem.message}"


def test_missing_image(bench: Path) -> None:
    (bench / "concepts/hello-kitty/images/002.png").unlink()
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "images[2].file")
    assert problem.message == "images/002.png: image file not found"


def test_truncated_png(bench: Path) -> None:
    path = bench / "concepts/hello-kitty/images/001.png"
    _png(path, seed=5, size=64)  # noise compresses badly, so the cut lands inside the pixel data
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "images[1].file")
    assert problem.message.startswith("images/001.png: image is truncated")


def test_test_image_identical_to_forget_image(bench: Path) -> None:
    folder = bench / "concepts/hello-kitty/images"
    (folder / "002.png").write_bytes((folder / "000.png").read_bytes())
    problem = only_error(bench)
    assert (problem.field, problem.message) == (
        "images[2].file",
        "same picture as the forget image (images[0].file)",
    )


def test_alias_equal_to_another_concepts_name(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c["aliases"].append("facebook"))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (KITTY, "aliases[1]")
    assert "also the name of concept 'Facebook'" in problem.message


def test_prompt_targets_must_fit_their_type(bench: Path) -> None:
    def change(c: dict[str, Any]) -> None:
        c["recognition_prompts"][0]["targets"] = ["a cat"]
        c["recognition_prompts"][1]["targets"] = ["no"]
        c["multilingual_prompts"][0]["type"] = "who"
        c["multihop"][0]["answers"] = []

    edit_json(bench / KITTY, change)
    fields = [p.field for p in errors(validate_benchmark(bench))]
    assert fields == [
        "recognition_prompts[0].targets",
        "recognition_prompts[1].targets",
        "multilingual_prompts[0].type",
        "multihop[0].answers",
    ]


def test_special_tokens(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c.update(special_tokens=[]))
    assert (only_error(bench).field, only_error(bench).message) == ("special_tokens", "must not be empty")
    edit_json(bench / KITTY, lambda c: c.update(special_tokens=[f"t{i}" for i in range(11)]))
    assert any(p.field == "special_tokens" and p.severity == "warning" for p in validate_benchmark(bench))


def test_specificity_problems(bench: Path) -> None:
    spec = [
        {"image": "../elsewhere.png", "question": "Q?", "answers": ["a"]},
        {"image": "concepts/facebook/images/404.png", "question": "Q?", "answers": ["a"]},
    ]
    write_benchmark_json(bench / "specificity.json", spec)
    found = [(p.file, p.field) for p in errors(validate_benchmark(bench))]
    assert found == [("specificity.json", "[0].image"), ("specificity.json", "[1].image")]


def test_missing_concept_folder_and_record(bench: Path) -> None:
    (bench / "concepts/facebook/concept.json").unlink()
    edit_json(bench / "manifest.json", lambda m: m["concepts"].append("mario"))
    found = [(p.file, p.field, p.message) for p in errors(validate_benchmark(bench))]
    assert ("manifest.json", "concepts[3]", "concept folder concepts/mario not found") in found
    assert any(f == "concepts/facebook/concept.json" and "not found" in m for f, _, m in found)


def test_all_problems_are_collected_and_load_refuses(bench: Path) -> None:
    edit_json(bench / KITTY, lambda c: c.update(category="toy"))
    (bench / "concepts/facebook/images/002.png").write_bytes(b"not a png")
    problems = validate_benchmark(bench)
    assert len(errors(problems)) == 2
    assert format_problems(bench, problems).splitlines()[-1] == "INVALID: 2 errors, 3 warnings"
    # Loading never decodes images, so only the category stops it.
    with pytest.raises(BenchmarkError, match=f"{KITTY}: category: unknown category 'toy'"):
        load_benchmark(bench)


# --- images on their own ------------------------------------------------------------------------


def test_open_image_limits(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", seed=0, size=8)
    with pytest.raises(BenchFileError, match=r"image too large \(8x8 pixels; limit 10 pixels\)"):
        open_image(tmp_path / "a.png", max_pixels=10)
    with pytest.raises(BenchFileError, match="image file too large"):
        open_image(tmp_path / "a.png", max_bytes=10)
    with pytest.raises(BenchFileError, match="not a regular file"):
        open_image(tmp_path)
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert open_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)  # transparent -> white


def test_resolve_inside(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "a/../b.png") == (tmp_path / "b.png").resolve()
    for bad in ("../x.png", "/etc/passwd", "C:\\x.png", ""):
        with pytest.raises(BenchmarkError):
            resolve_inside(tmp_path, bad)


def _rename(name: str, aliases: list[str]) -> Any:
    def change(c: dict[str, Any]) -> None:  # the name, and the prompts' targets that spell it
        c.update(name=name, aliases=aliases, special_tokens=[name])
        for p in (*c["recognition_prompts"], *c["multilingual_prompts"]):
            if p["type"] == "name":
                p["targets"] = [name, *aliases]

    return change


def test_names_with_invisible_characters_are_refused_and_nfc_nfd_are_one_name(bench: Path) -> None:
    edit_json(bench / KITTY, _rename("Hello\u202eKitty", []))
    problem = only_error(bench)
    assert (problem.file, problem.field) == (
        KITTY,
        "name",
    ) and "U+202E RIGHT-TO-LEFT OVERRIDE" in problem.message
    edit_json(bench / KITTY, _rename("Hello Kitty", ["Kitty\u200bWhite"]))
    assert "U+200B ZERO WIDTH SPACE" in only_error(bench).message
    # "Zoë" composed (NFC) and decomposed (NFD) is one name: a clash, and the record keeps NFC
    edit_json(bench / KITTY, _rename("Zo\u00eb", []))
    edit_json(bench / "concepts/facebook/concept.json", _rename("Zoe\u0308", []))
    assert "also the name of" in only_error(bench).message
    edit_json(bench / "concepts/facebook/concept.json", _rename("Facebook", []))
    edit_json(bench / KITTY, _rename("Zoe\u0308", []))
    assert load_benchmark(bench).concept("hello-kitty").name == "Zo\u00eb"
    assert load_benchmark(bench).concept("zo\u00eb").slug == "hello-kitty"


def test_show_json_into_a_closed_pipe_ends_quietly(bench: Path) -> None:
    import subprocess
    import sys

    # like `siu bench show --json | head`: the reader is gone before siu writes
    proc = subprocess.Popen([sys.executable, "-m", "siu.cli", "bench", "show", "--json", str(bench)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


def test_concept_records_and_folders_linked_out_of_the_benchmark_are_refused(
    bench: Path, tmp_path: Path
) -> None:
    import shutil

    outside = tmp_path / "outside"
    outside.mkdir()
    record = bench / KITTY
    shutil.copy(record, outside / "concept.json")
    record.unlink()
    record.symlink_to(outside / "concept.json")
    problem = only_error(bench)
    assert problem.file == KITTY and "escapes" in problem.message
    record.unlink()
    shutil.copy(outside / "concept.json", record)
    shutil.move(bench / "concepts", outside / "concepts")  # the whole concepts/ folder lives elsewhere
    (bench / "concepts").symlink_to(outside / "concepts")
    found = errors(validate_benchmark(bench))
    assert len(found) == 4 and all("escapes" in p.message for p in found)  # 3 concepts, 1 specificity image
