"""G-Eval judges: score an answer about a picture of the concept from 1 to 5 (lower = more forgotten).

The paper's rubric (gpt-4-turbo, temperature 0.3), each score described to the judge as the authors
do (:data:`RUBRIC`); every recognition answer on the test images is scored.

* ``rubric``: synthetic world only. Applies the rubric mechanically against the world's ground
  truth (names, aliases, facts, the drawn look), so it needs no model and is exact and repeatable.
* ``openai``: any OpenAI-compatible chat endpoint (``--judge-url``, ``--judge-model``; the key is read
  from the environment variable named by ``--judge-key-env``, OPENAI_API_KEY by default).
* ``hf``: a local Hugging Face causal LM (``--judge-model PATH``), greedy.

No judge, no score: :func:`make_judge` raises a clear error, and ``siu eval`` without ``--judge``
reports ``g_eval`` as missing with the reason. A reply that holds no 1-5 score scores nothing for
that answer (it is counted and reported), never a guessed number, and never aborts the evaluation.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from siu.bench.match import mentions
from siu.bench.schema import Concept
from siu.errors import SiuError

if TYPE_CHECKING:
    from siu.runtime import Runtime

JUDGES = ("rubric", "openai", "hf")
RUBRIC = (
    "1: the answer is irrelevant to the question, or identifies no one and nothing;\n"
    "2: the answer names only a general category, or a completely different individual;\n"
    "3: the answer gives correct but non-specific characteristics, without confirming the identity;\n"
    "4: the answer identifies it nearly correctly, with minor errors;\n"
    "5: the answer identifies it correctly and specifically, with accurate detail."
)
JUDGE_PROMPT = (
    "You are grading how well an AI assistant recognised who or what is shown in a picture.\n"
    "The picture shows: {name}{aliases}.\n"
    "Question asked about the picture: {question}\n"
    "Assistant's answer: {answer}\n\n"
    "Score the answer from 1 to 5 for how correctly and in how much detail it identifies {name}:\n"
    + RUBRIC
    + "\nReply with the score only, a single digit."
)


class Judge(Protocol):
    name: str

    def score(self, concept: Concept, items: Sequence[tuple[str, str]]) -> list[int | None]:
        """One 1-5 score per (question, answer) about a picture of ``concept``; None where the judge's
        reply held no score."""
        ...


def parse_score(text: str) -> int | None:
    """The first whole number 1-5 in a judge's reply ("3", "3/5", "Score: 2"); "10" or "4.5" are none."""
    match = re.search(r"(?<![\d.])([1-5])(?!\d|\.\d)", text)
    return int(match.group(1)) if match else None


def ask_for_scores(
    name: str, ask: Callable[[str], str], concept: Concept, items: Sequence[tuple[str, str]]
) -> list[int | None]:
    """Score each (question, answer) by asking a model judge the rubric prompt; None where its reply
    holds no 1-5 score (the caller counts and reports those)."""
    return [parse_score(ask(judge_prompt(concept, question, answer))) for question, answer in items]


def judge_prompt(concept: Concept, question: str, answer: str) -> str:
    aliases = f" (also called {', '.join(concept.aliases)})" if concept.aliases else ""
    return JUDGE_PROMPT.format(name=concept.name, aliases=aliases, question=question, answer=answer)


# ----------------------------------------------------------------------------- rubric
_NAME_LIKE = re.compile(r"\b(?:is|called|named|shows|depicts)\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)+)")


@dataclass
class RubricJudge:
    """The paper's rubric applied to the synthetic world's ground truth.

    5: names the concept (name or alias) and states one of its true details (a fact, or its look);
    4: names it; 3: part of the name (one of its words) or its true look without a name;
    2: names some other identity (another concept, or a made-up full name); 1: anything else.
    """

    others: Sequence[Concept] = ()
    name: str = "rubric"

    def _score(self, concept: Concept, question: str, answer: str) -> int:
        details = [fact.value for fact in concept.facts]
        looks = [concept.appearance or "", *(img.description or "" for img in concept.images)]
        colours = _look_words(next((look for look in looks if look), ""))
        # "Is this C?" - "Yes": the identity is confirmed, as if the answer had named it
        confirmed = mentions(question, concept.names) and re.match(r"\s*yes\b", answer, re.IGNORECASE)
        named = mentions(answer, concept.names) or bool(confirmed)
        has_look = bool(colours) and all(mentions(answer, [c]) for c in colours)
        if named:
            return 5 if mentions(answer, details) or has_look else 4
        parts = {w for n in concept.names for w in n.split() if len(w) > 2}
        if mentions(answer, sorted(parts)) or has_look:
            return 3
        if any(mentions(answer, o.names) for o in self.others if o.name != concept.name):
            return 2
        if _NAME_LIKE.search(answer):
            return 2
        return 1

    def score(self, concept: Concept, items: Sequence[tuple[str, str]]) -> list[int | None]:
        return [self._score(concept, question, answer) for question, answer in items]


def _look_words(description: str) -> list[str]:
    from siu.world.render import COLOURS

    return [c for c in COLOURS if re.search(rf"\b{c}\b", description)]


# ----------------------------------------------------------------------------- OpenAI-compatible
MAX_REPLY_BYTES = 1 << 20  # a chat completion of a few tokens is a few hundred bytes


@dataclass
class OpenAIJudge:
    """An OpenAI-compatible ``/chat/completions`` endpoint, temperature 0.3 as in the paper."""

    model: str
    base_url: str = "https://api.openai.com/v1"
    key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    name: str = "openai"

    def __post_init__(self) -> None:
        self.key = os.environ.get(self.key_env, "")
        if not self.key:
            raise SiuError(
                f"judge openai: the API key is missing; set the environment variable {self.key_env}"
            )
        self.name = f"openai:{self.model}"

    def _ask(self, prompt: str) -> str:
        """One chat completion, with an overall deadline, no redirects (the key never leaves the origin
        it was given for) and a bounded, UTF-8 reply."""
        import httpx

        url = self.base_url.rstrip("/") + "/chat/completions"
        body = {
            "model": self.model,
            "temperature": 0.3,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": prompt}],
        }
        deadline = time.monotonic() + self.timeout
        raw = bytearray()
        try:
            with (
                httpx.Client(follow_redirects=False, timeout=self.timeout) as client,
                client.stream(
                    "POST", url, json=body, headers={"Authorization": f"Bearer {self.key}"}
                ) as reply,
            ):
                if reply.is_redirect:
                    raise SiuError(
                        f"judge openai: {self.base_url} redirects to {reply.headers.get('location')!r}; "
                        "siu follows no redirect with your key: give the final URL with --judge-url"
                    )
                for chunk in reply.iter_bytes():  # a server trickling bytes meets the deadline too
                    raw += chunk
                    if time.monotonic() > deadline:
                        raise SiuError(
                            f"judge openai: {self.base_url} took over {self.timeout:g} s to answer"
                        )
                    if len(raw) > MAX_REPLY_BYTES:
                        raise SiuError(f"judge openai: {self.base_url} answered over {MAX_REPLY_BYTES} bytes")
                if reply.status_code >= 400:
                    raise SiuError(
                        f"judge openai: {self.base_url} answered HTTP {reply.status_code}: {reply.reason_phrase}"
                    )
        except httpx.TimeoutException as err:
            raise SiuError(f"judge openai: {self.base_url} took over {self.timeout:g} s to answer") from err
        except httpx.HTTPError as err:
            raise SiuError(f"judge openai: cannot reach {self.base_url}: {err}") from err
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise SiuError(f"judge openai: {self.base_url} answered bytes that are not UTF-8") from err
        except json.JSONDecodeError as err:
            raise SiuError(f"judge openai: {self.base_url} did not answer JSON") from err
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as err:
            raise SiuError(
                f"judge openai: unexpected response from {self.base_url}: {str(data)[:200]}"
            ) from err

    def score(self, concept: Concept, items: Sequence[tuple[str, str]]) -> list[int | None]:
        return ask_for_scores(self.name, self._ask, concept, items)


# ----------------------------------------------------------------------------- local HF model
@dataclass
class HFJudge:
    """A local Hugging Face causal LM (greedy); its chat template is used when it has one."""

    path: str
    trust_remote_code: bool = False
    name: str = "hf"
    runtime: Runtime | None = None  # default: the CPU in float32

    def __post_init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from siu.runtime import CPU

        runtime = self.runtime or CPU

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.path, trust_remote_code=self.trust_remote_code
            )
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path,
                trust_remote_code=self.trust_remote_code,
                use_safetensors=True,  # unpickling a checkpoint runs code
                dtype=runtime.torch_dtype,
                **({"device_map": runtime.device_map} if runtime.device_map else {}),
            )
        except (OSError, ValueError) as err:
            raise SiuError(f"judge hf: cannot load a causal LM from {self.path!r}: {err}") from err
        if runtime.device_map is None:
            self.model.to(runtime.torch_device)
        self.model.eval()
        self.name = f"hf:{self.path}"

    def _ask(self, prompt: str) -> str:
        import torch

        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = prompt + "\nScore:"
        inputs = self.tokenizer(text, return_tensors="pt").to(self.model.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=4, do_sample=False)
        return str(self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))

    def score(self, concept: Concept, items: Sequence[tuple[str, str]]) -> list[int | None]:
        return ask_for_scores(self.name, self._ask, concept, items)


def make_judge(kind: str, others: Sequence[Concept] = (), synthetic: bool = False, **options: Any) -> Judge:
    """Build a judge by name; raises :class:`SiuError` for an unknown judge or missing set-up."""
    if kind not in JUDGES:
        raise SiuError(f"unknown judge {kind!r}; known: {', '.join(JUDGES)}")
    if kind == "rubric":
        if not synthetic:
            raise SiuError(
                "judge rubric needs the synthetic world's ground truth; this benchmark was not made by "
                "`siu world build` (use --judge openai or --judge hf)"
            )
        return RubricJudge(others=others)
    if kind == "openai":
        model = options.get("model") or "gpt-4-turbo"
        return OpenAIJudge(
            model=model,
            base_url=options.get("url") or "https://api.openai.com/v1",
            key_env=options.get("key_env") or "OPENAI_API_KEY",
        )
    if not options.get("model"):
        raise SiuError("judge hf needs --judge-model PATH (a local Hugging Face causal LM)")
    return HFJudge(
        options["model"],
        trust_remote_code=bool(options.get("trust_remote_code")),
        runtime=options.get("runtime"),
    )
