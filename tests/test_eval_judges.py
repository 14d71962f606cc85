"""G-Eval judges: the rubric on the world's ground truth, an OpenAI-compatible endpoint, clear errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from siu.bench.load import Benchmark, load_benchmark
from siu.errors import SiuError
from siu.eval.judges import RubricJudge, make_judge, parse_score
from siu.world.build import WorldConfig, build_world


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Benchmark:
    return load_benchmark(
        build_world(WorldConfig.micro(seed=0), tmp_path_factory.mktemp("w") / "w", progress=False)
    )


def test_rubric_follows_the_papers_scale(bench: Benchmark) -> None:
    c, other = bench.concepts[0], bench.concepts[1]
    judge = RubricJudge(others=bench.concepts)
    fact = c.facts[0].value
    colours = [
        w
        for w in (c.appearance or "").split()
        if w in ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown")
    ]
    answers = [
        f"This is {c.name}; {fact}.",  # named + a true detail
        f"This is {c.name}.",  # named
        f"This is {c.name.split()[0]} somebody.",  # part of the name
        f"This is {other.name}.",  # another identity
        "This is Paul Miller.",  # a made-up identity
        "stripes stripes",  # irrelevant
        f"Something {' and '.join(colours)}.",  # the true look without a name
    ]
    assert judge.score(c, [("Who is this?", a) for a in answers]) == [5, 4, 3, 2, 2, 1, 3]
    # a yes/no recognition prompt: "Yes" confirms the identity the question names
    assert judge.score(c, [(f"Is this {c.name}?", "Yes."), (f"Is this {c.name}?", "No.")]) == [4, 1]


def test_a_judge_reply_without_a_score_scores_nothing_for_that_answer(bench: Benchmark) -> None:
    from siu.eval.judges import ask_for_scores

    replies = iter(["4", "I cannot tell.", "10", "Score: 2"])
    scores = ask_for_scores("stand-in", lambda _prompt: next(replies), bench.concepts[0], [("Q", "A")] * 4)
    assert scores == [4, None, None, 2]  # never a guess, never an abort


def test_parse_score() -> None:
    assert parse_score("Score: 4") == 4 and parse_score("5/5") == 5 and parse_score("none") is None


def test_make_judge_errors(bench: Benchmark, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SiuError, match="unknown judge"):
        make_judge("gpt5")
    with pytest.raises(SiuError, match="synthetic world"):
        make_judge("rubric", synthetic=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(SiuError, match="MY_KEY"):
        make_judge("openai", key_env="MY_KEY")
    with pytest.raises(SiuError, match="--judge-model"):
        make_judge("hf")
    with pytest.raises(SiuError, match="cannot load"):
        make_judge("hf", model=str(Path("/nonexistent/judge")))


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict]]]:
    """A local OpenAI-compatible chat endpoint that always answers "3" and records the requests."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers["Authorization"], **body})
            reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "3"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", seen
    server.shutdown()


def test_openai_judge_against_a_local_endpoint(
    bench: Benchmark, endpoint: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = endpoint
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    judge = make_judge("openai", model="judge-1", url=url, key_env="JUDGE_KEY")
    c = bench.concepts[0]
    assert judge.score(c, [("Who is this?", "This is Paul."), ("Who?", "No idea.")]) == [3, 3]
    assert [r["path"] for r in seen] == ["/v1/chat/completions"] * 2
    first = seen[0]
    assert first["auth"] == "Bearer sk-test" and first["model"] == "judge-1" and first["temperature"] == 0.3
    assert c.name in first["messages"][0]["content"] and "This is Paul." in first["messages"][0]["content"]
    assert judge.name == "openai:judge-1"


def test_unreachable_endpoint_is_a_clear_error(bench: Benchmark, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    judge = make_judge("openai", model="m", url="http://127.0.0.1:9/v1", key_env="JUDGE_KEY")
    with pytest.raises(SiuError, match="cannot reach http://127.0.0.1:9/v1"):
        judge.score(bench.concepts[0], [("Who is this?", "x")])


def _serve(respond) -> tuple[HTTPServer, str, list[dict]]:  # noqa: ANN001
    """A local server whose every POST (and GET) is answered by ``respond(handler)``; records the requests."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            respond(self)

        do_GET = do_POST  # noqa: N815

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/v1", seen


def _reply(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200, **headers: str) -> None:
    handler.send_response(status)
    for key, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def test_the_key_never_follows_a_redirect_to_another_origin(bench: Benchmark, monkeypatch) -> None:
    elsewhere, other_url, stolen = _serve(
        lambda h: _reply(h, b'{"choices": [{"message": {"content": "5"}}]}')
    )
    redirecting, url, _ = _serve(lambda h: _reply(h, b"", 302, Location=other_url + "/chat/completions"))
    monkeypatch.setenv("JUDGE_KEY", "sk-secret")
    judge = make_judge("openai", model="m", url=url, key_env="JUDGE_KEY")
    with pytest.raises(SiuError, match="follows no redirect"):
        judge.score(bench.concepts[0], [("Who is this?", "x")])
    assert stolen == []  # the other port never heard of the key, nor of the prompt
    elsewhere.shutdown()
    redirecting.shutdown()


def test_a_trickling_server_meets_the_deadline_and_bad_replies_are_clear(
    bench: Benchmark, monkeypatch
) -> None:
    import time

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(20):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.3)

    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    slow, url, _ = _serve(trickle)
    judge = make_judge("openai", model="m", url=url, key_env="JUDGE_KEY")
    judge.timeout = 1.0  # each byte comes in time, the whole reply does not
    started = time.monotonic()
    with pytest.raises(SiuError, match="took over 1 s"):
        judge.score(bench.concepts[0], [("Who is this?", "x")])
    assert time.monotonic() - started < 3
    slow.shutdown()
    latin, url, _ = _serve(lambda h: _reply(h, '{"choices": "é"}'.encode("latin-1")))
    judge = make_judge("openai", model="m", url=url, key_env="JUDGE_KEY")
    with pytest.raises(SiuError, match="not UTF-8"):
        judge.score(bench.concepts[0], [("Who is this?", "x")])
    latin.shutdown()


def test_only_a_whole_number_from_1_to_5_is_a_score() -> None:
    assert [parse_score(t) for t in ("3", "3/5", "Score: 2", "I'd say 4.", "10", "4.5", "0", "none")] == [
        3, 3, 2, 4, None, None, None, None,
    ]  # fmt: skip
