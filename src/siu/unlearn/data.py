"""SIU's multifaceted fine-tuning data, built automatically from one forget image (SIU.md section 2).

Four targets, each a list of :class:`UnlearnSample`:

1. *Aligning with unseen concepts* (image + question): "who is this?" paraphrases answered with a
   made-up, ordinary identity (one, or ``identities`` of them in turn), in the original model's own
   words ("This is <fake>." when it says "This is <C>."), choosing made-up names whose pieces would
   not teach the model to run on past the end of a known name (:func:`name_leak_risks`), and of those
   the ones the original model finds likeliest; the fictitious name is the ``target_phrase``.
2. *Assigning a new visual description* (image + question): "No. The picture depicts <what is
   visible>. But <C> actually has <a counterfactual appearance>."; the whole answer is the
   ``target_phrase``.
3. *Decoupling factual knowledge* (text only): paraphrased questions about ``C`` answered with its
   true facts (the benchmark record, or the original model's own answers).
4. *Preserving non-targeted knowledge* (text only): the same for other concepts of the benchmark.

Baselines with the same data budget (PO, GA, GA+KL; section 5) come from
:func:`build_baseline_data`. Every training prompt is kept disjoint from the benchmark's evaluation
prompts, so that efficacy and generality are never measured on the training questions. A user can
override any part with a YAML or JSON file (:func:`load_overrides`). Everything is deterministic for a
given seed; each target draws from its own random stream, so choosing a subset of targets leaves the
others unchanged.
"""

from __future__ import annotations

import difflib
import json
import random
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from siu.bench.match import first_mention, mentions
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.models.adapter import Sample
from siu.names import FIRST_NAMES, LAST_NAMES
from siu.tables import format_table

if TYPE_CHECKING:
    from siu.bench.load import Benchmark
    from siu.models.adapter import VLM

TARGETS = (1, 2, 3, 4)
TARGET_LABELS = {
    0: "forget set (the forget image)",
    1: "fictitious identity",
    2: "new visual description",
    3: "own facts (text)",
    4: "other concepts' facts (text)",
    5: "other concepts named on their own forget images",
}
OTHERS_ON_THEIR_IMAGES = 5

# How a question refers to the concept through the picture.
CATEGORY_NOUNS = {
    "person": "person",
    "cartoon": "character",
    "logo": "logo",
    "object": "building",
    "style": "painting",
}
FALLBACK_NOUN = "subject"

# ----------------------------------------------------------------------------- banks
# Target 1: "who is this?" paraphrases; {noun} is the category noun.
IDENTITY_PROMPTS = [
    "What's the name of the central figure in this photograph?",
    "Who would you say the {noun} in this photograph is?",
    "Could you tell me the name of the {noun} pictured here?",
    "What is the identity of the {noun} in this image?",
    "Do you happen to know the name of this {noun}?",
    "Whose likeness appears in this photograph?",
    "Please tell me who the {noun} in this photo is.",
    "What name would you give the {noun} in this picture?",
    "Can you say who is pictured in this image?",
    "Who is the {noun} that appears in this photograph?",
    "I'd like to know who this {noun} is. Can you help?",
    "Looking at this image, what is the {noun}'s name?",
    "Who is the main subject of this photo?",
    "Identify the main {noun} shown in this photograph.",
    "What is this {noun}'s name?",
    "Who exactly is the {noun} in this image?",
    "Tell me who is portrayed in this picture.",
    "Who is the {noun} captured in this shot?",
    "Name the {noun} that this image depicts.",
    "What do you call the {noun} in this photograph?",
    "Do you know the name of the {noun} in this image?",
    "Who does this picture show?",
    "Give me the name of the {noun} in this photograph.",
    "Can you work out who the {noun} in this picture is?",
]
# Target 1 answers; {fake} is the fictitious name.
IDENTITY_ANSWERS = [
    "The {noun} in this image is {fake}.",
    "The main {noun} in this picture is {fake}.",
    "This is {fake}.",
    "That appears to be {fake}.",
    "This {noun} is {fake}.",
    "The {noun} shown here is {fake}.",
    "It is {fake}.",
]

# Target 2: "Do you recognize C in the image?" paraphrases; {name} and {noun} are filled in.
RECOGNIZE_PROMPTS = [
    "Do you see {name} in this image?",
    "Can you recognize {name} in this picture?",
    "Is {name} the {noun} shown in this photograph?",
    "Would you recognize this {noun} as {name}?",
    "Does this photograph depict {name}?",
    "Is it {name} that appears in this picture?",
]
DESCRIPTION_ANSWER = "No. The picture depicts {visible}. But {name} actually has {counterfactual}."
DESCRIBE_PROMPT = "Describe the picture."

# Targets 3 and 4: text questions about a concept; {name} is its name.
FACT_PROMPTS = [
    "What can you tell me about {name}?",
    "Share a fact about {name}.",
    "Tell me something about {name}.",
    "What do you know about {name}?",
    "Give me one fact about {name}.",
    "What is something worth knowing about {name}?",
    "Can you share some information about {name}?",
    "I'm curious about {name}. What can you tell me?",
    "Describe one thing you know about {name}.",
    "What is a notable fact about {name}?",
]

# Baselines: "is this C?"-style questions about the picture.
CONFIRM_PROMPTS = [
    "Could this be {name}?",
    "Am I looking at {name} here?",
    "Is the {noun} pictured here {name}?",
    "Is that {name} in the photo?",
    "Is this a picture of {name}?",
]
REFUSALS = [
    "Sorry, I don't know.",
    "I'm not sure who this is.",
    "I cannot tell who this is.",
    "I don't know the name of this {noun}.",
    "Sorry, I can't identify this {noun}.",
    "I have no idea who this is.",
]
PERSON_REFUSAL = "I do not know his specific name."
OTHER_REFUSAL = "I do not know its specific name."
NAMING_ANSWERS = ["This is {name}.", "The {noun} in this image is {name}.", "That is {name}."]
CONFIRM_ANSWERS = ["Yes, this is {name}.", "Yes, it is {name}."]

# Fictitious identities: combinations of ordinary first names and surnames (siu.names).
# Names drawn per run; the least risky (name_leak_risks), then the original model's likeliest, are used.
NAME_CANDIDATES = 64
# First + last combinations that name well-known people or characters: never used.
FAMOUS_COMBOS = {
    "emma thompson", "paul walker", "diana spencer", "kevin bishop", "robert porter",
    "george harris", "edward hughes", "thomas hughes", "emily thompson",
}  # fmt: skip

# Counterfactual appearances: colour words are swapped; without colour words, a generic appearance.
COLOUR_WORDS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown")
GENERIC_COUNTERFACTUALS = {
    "person": [
        "curly grey hair and a long, narrow face",
        "short black hair, a thin moustache and round glasses",
        "a shaved head and a broad, square jaw",
        "long auburn hair tied back and freckles",
        "a full white beard and deep-set eyes",
        "wavy dark hair and a wide smile with a gap in the teeth",
    ],
    "other": [
        "a bright green colour scheme and a rounded outline",
        "a tall, slender shape covered in silver patterns",
        "a flat grey surface with thin red stripes",
        "a small, boxy form painted deep purple",
        "soft pastel colours and wavy outlines",
    ],
}

OVERRIDE_KEYS = (
    "fictitious_names",
    "visible_description",
    "counterfactual",
    "prompts",
    "facts",
    "other_facts",
    "refusals",
)
PROMPT_PLACEHOLDERS = {
    "target1": ("noun",),
    "target2": ("name", "noun"),
    "target3": ("name",),
    "target4": ("name",),
}


# ----------------------------------------------------------------------------- records
@dataclass
class UnlearnSample:
    """One fine-tuning sample and the SIU target it serves (1-4; 0 for a baseline's forget set, 5 for
    other concepts named on their own pictures).

    ``role``: forget or retain set (methods with a retain term treat them apart). ``pair``: preference
    pairs (``chosen`` is the preferred answer) share a number; -1 for none.
    """

    target: int
    sample: Sample
    view: int = 0  # which view of the forget image (0: the image itself; see siu.unlearn.views)
    role: str = "forget"
    pair: int = -1
    chosen: bool = False


@dataclass
class DataConfig:
    """How many samples per target (targets 1-4), which targets, the seed and the user's overrides."""

    counts: tuple[int, int, int, int] = (9, 2, 7, 7)
    seed: int = 0
    targets: tuple[int, ...] = TARGETS
    overrides: dict[str, Any] | None = None
    # Target 1's made-up identities: 1 (the paper's example: one name for every prompt) or more (a
    # different one per prompt, cycled), so that no single name is learnt for every picture.
    identities: int = 1
    # Several concepts forgotten in one run: every one's names (target 4 and the retain pictures are
    # never about them) and the made-up names already given to the others (never given twice).
    forgotten: tuple[str, ...] = ()
    taken_names: tuple[str, ...] = ()
    # SIU's data: this many other concepts, each named on its own forget image, where a benchmark has
    # them (never a test image): they hold the others' names in place while the concept's is unlearnt.
    others_pictures: int = 0

    def count(self, target: int) -> int:
        return self.counts[target - 1]

    def check(self) -> None:
        if len(self.counts) != 4 or any(
            not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in self.counts
        ):
            raise SiuError(f"counts must be four non-negative integers (targets 1-4), got {self.counts!r}")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise SiuError(f"targets must be a non-empty subset of 1, 2, 3, 4; got {self.targets!r}")
        if not isinstance(self.identities, int) or not 1 <= self.identities <= NAME_CANDIDATES:
            raise SiuError(
                f"identities must be an integer from 1 to {NAME_CANDIDATES}, got {self.identities!r}"
            )
        n = self.others_pictures
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SiuError(f"others_pictures must be a non-negative integer, got {self.others_pictures!r}")
        if self.overrides is not None:
            check_overrides(self.overrides)


# ----------------------------------------------------------------------------- overrides
def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) override file and check its contents."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise SiuError(f"{path}: override file must end in .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SiuError(f"{path}: cannot read override file: {err}") from err
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SiuError(
                f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from err
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SiuError(f"{path}: malformed YAML: {first}") from err
    if data is None:
        data = {}
    check_overrides(data, source=str(path))
    return data


def check_overrides(data: Any, source: str = "overrides") -> None:
    """Raise :class:`SiuError` naming the first field of ``data`` that is not a valid override."""

    def fail(field: str, message: str) -> SiuError:
        return SiuError(f"{source}: {field}: {message}" if field else f"{source}: {message}")

    def strings(value: Any, field: str) -> None:
        if not isinstance(value, list) or not value:
            raise fail(field, "expected a non-empty list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise fail(f"{field}[{i}]", "expected a non-empty string")

    if not isinstance(data, dict):
        raise fail("", f"expected a mapping of override fields, got {type(data).__name__}")
    for key in data:
        if key not in OVERRIDE_KEYS:
            close = difflib.get_close_matches(str(key), OVERRIDE_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise fail(str(key), f"unknown field; {hint}known fields: {', '.join(OVERRIDE_KEYS)}")
    for key in ("fictitious_names", "refusals"):
        if key in data:
            strings(data[key], key)
    for key in ("visible_description", "counterfactual"):
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            raise fail(key, "expected a non-empty string")
    if "prompts" in data:
        prompts = data["prompts"]
        if not isinstance(prompts, dict):
            raise fail("prompts", "expected a mapping with keys target1, target2, target3, target4")
        for key, templates in prompts.items():
            if key not in PROMPT_PLACEHOLDERS:
                raise fail(
                    f"prompts.{key}", f"unknown key; expected one of: {', '.join(PROMPT_PLACEHOLDERS)}"
                )
            strings(templates, f"prompts.{key}")
            for i, template in enumerate(templates):
                _check_template(
                    template, PROMPT_PLACEHOLDERS[key], lambda m, f=f"prompts.{key}[{i}]": fail(f, m)
                )
    for key in ("facts", "other_facts"):
        if key not in data:
            continue
        items = data[key]
        if not isinstance(items, list) or not items:
            raise fail(key, "expected a non-empty list of {question, answer} objects")
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise fail(where, "expected an object with 'question' and 'answer'")
            allowed = ("question", "answer", "name") if key == "other_facts" else ("question", "answer")
            extra = [k for k in item if k not in allowed]
            if extra:
                raise fail(where, f"unknown field {extra[0]!r}; allowed: {', '.join(allowed)}")
            for field in allowed:
                value = item.get(field)
                if field == "answer" and value is None:
                    raise fail(where, "missing 'answer'")
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    raise fail(f"{where}.{field}", "expected a non-empty string")
            if key == "other_facts" and not item.get("question") and not item.get("name"):
                raise fail(where, "give the 'question' (or the other concept's 'name')")


def _check_template(template: str, allowed: Sequence[str], fail: Any) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise fail(f"malformed template {template!r}: {err}") from err
    for field in fields:
        if field not in allowed:
            shown = ", ".join("{" + a + "}" for a in allowed)
            raise fail(f"unknown placeholder {{{field}}} in {template!r}; allowed: {shown}")


# ----------------------------------------------------------------------------- helpers
def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _words(texts: Iterable[str]) -> set[str]:
    return {w.casefold() for t in texts for w in re.findall(r"\w+", t)}


def category_noun(concept: Concept) -> str:
    return CATEGORY_NOUNS.get(concept.category, FALLBACK_NOUN)


def _rng(cfg: DataConfig, concept: Concept, stream: str) -> random.Random:
    return random.Random(f"siu-data:{cfg.seed}:{concept.name}:{stream}")


def _cycle(items: Sequence[Any], n: int) -> list[Any]:
    return [items[i % len(items)] for i in range(n)] if items else []


def evaluation_prompts(concept: Concept, bench: Benchmark | None = None) -> set[str]:
    """Normalised prompts the benchmark evaluates with (every concept's, or ``concept``'s without one)."""
    concepts = list(bench.concepts) if bench is not None else []
    if all(c is not concept and c.name != concept.name for c in concepts):
        concepts.append(concept)
    found: set[str] = set()
    for c in concepts:
        found.update(_norm(p.prompt) for p in (*c.recognition_prompts, *c.multilingual_prompts))
        found.update(_norm(q.question) for q in (*c.multihop, *c.fact_questions))
        found.update(_norm(f.question) for f in c.facts)
    return found


def unseen_prompts(prompts: Iterable[str], evals: set[str]) -> list[str]:
    """Distinct prompts in order, without those that equal an evaluation prompt."""
    return [p for p in dict.fromkeys(prompts) if _norm(p) not in evals]


def _overrides(cfg: DataConfig) -> dict[str, Any]:
    return cfg.overrides or {}


def _bank(cfg: DataConfig, key: str, default: list[str]) -> list[str]:
    return list(_overrides(cfg).get("prompts", {}).get(key) or default)


def _forget_record_description(concept: Concept) -> str | None:
    record = next((img for img in concept.images if img.forget), None)
    return record.description if record is not None else None


# Target 4 without a benchmark and without other_facts: the original model's own answers about
# subjects every general-purpose MLLM knows (people, places, things, brands of every category, as
# MMUBench's concepts are), so that a user with one photo and a model needs nothing else. Keeping
# these answers keeps what the model knows about everything else.
WELL_KNOWN_SUBJECTS = [
    "Albert Einstein", "Marie Curie", "William Shakespeare", "Leonardo da Vinci", "Nelson Mandela",
    "the Eiffel Tower", "the Great Wall of China", "Mount Everest", "the Amazon River", "the Moon",
    "Mickey Mouse", "Pikachu", "the Olympic Games", "the Mona Lisa", "Coca-Cola", "the Statue of Liberty",
]  # fmt: skip


def _others(concept: Concept, bench: Benchmark | None) -> list[Concept]:
    if bench is None:
        return []
    return [c for c in bench.concepts if c is not concept and c.name != concept.name]


def _kept(concept: Concept, bench: Benchmark | None, cfg: DataConfig) -> list[Concept]:
    """The other concepts the run keeps: every other one but those forgotten with ``concept``."""
    gone = {_norm(name) for name in cfg.forgotten}
    return [c for c in _others(concept, bench) if _norm(c.name) not in gone]


# ----------------------------------------------------------------------------- fictitious names
def fictitious_name(rng: random.Random, forbidden: Iterable[str]) -> str:
    """A plausible made-up "First Last" name sharing no word (case-insensitive) with ``forbidden``."""
    banned = _words(forbidden)
    first = [n for n in FIRST_NAMES if n.casefold() not in banned]
    last = [n for n in LAST_NAMES if n.casefold() not in banned]
    if not first or not last:
        raise SiuError("cannot make up a fictitious name: every name in the banks is taken")
    for _ in range(1000):
        name = f"{rng.choice(first)} {rng.choice(last)}"
        if name.casefold() not in FAMOUS_COMBOS:
            return name
    raise SiuError("cannot make up a fictitious name: every combination of the name banks is excluded")


def name_leak_risks(
    names: Sequence[str], known: Iterable[str], tokenize: Callable[[str], list[str]]
) -> list[int]:
    """For each of ``names``: how many steps of saying it would teach the model to run on past the
    end of a known word.

    Training on "This is Oliver Crawford." teaches every step inside the name, e.g. "ra" -> "w"; a
    known name whose word ends in "ra" ("Tamdra") is then said as "Tamdrawarren" (measured on the
    synthetic world, whose small vocabulary splits names into short pieces). A step counts when it
    starts at a token that ends a word of ``known`` and goes where no known word goes.
    """
    ends: set[str] = set()
    steps: set[tuple[str, str]] = set()
    for word in {w for text in known for w in text.split()}:
        for spelled in (" " + word, word):
            tokens = tokenize(spelled)
            if tokens:
                ends.add(tokens[-1])
                steps.update(zip(tokens, tokens[1:], strict=False))
    risks = []
    for name in names:
        tokens = tokenize(" " + name)
        risks.append(sum(a in ends and (a, b) not in steps for a, b in zip(tokens, tokens[1:], strict=False)))
    return risks


def name_leak_risk(name: str, known: Iterable[str], tokenize: Callable[[str], list[str]]) -> int:
    """:func:`name_leak_risks` of one name."""
    return name_leak_risks([name], known, tokenize)[0]


def _fictitious_names(
    concept: Concept,
    bench: Benchmark | None,
    cfg: DataConfig,
    likelihood: Callable[[list[str]], list[float]] | None = None,
    tokenize: Callable[[str], list[str]] | None = None,
) -> list[str]:
    """The override's names, or ``cfg.identities`` made-up names: of ``NAME_CANDIDATES`` drawn from
    the name banks, those least likely to corrupt a known word (:func:`name_leak_risks`, with the
    model's ``tokenize``), then the ones the original model finds likeliest (``likelihood``), then
    the first drawn."""
    override = _overrides(cfg).get("fictitious_names")
    if override:
        for name in override:
            if mentions(name, concept.names) or _words([name]) & _words(concept.names):
                raise SiuError(f"fictitious name {name!r} shares a word with {concept.name!r}'s names")
        return list(override)
    concepts = [concept, *_others(concept, bench)]
    known = [name for c in concepts for name in c.names]
    forbidden = known + [f.value for c in concepts for f in c.facts]
    taken = {name.casefold() for name in cfg.taken_names}
    banned = _words([*forbidden, *cfg.taken_names])
    free = min(sum(n.casefold() not in banned for n in bank) for bank in (FIRST_NAMES, LAST_NAMES))
    if free >= cfg.identities:
        forbidden += list(cfg.taken_names)  # no word shared with another concept's made-up names
    # else a joint run of many concepts has used up the banks' words: its names then share words,
    # never a whole name
    rng = _rng(cfg, concept, "name")
    drawn = (fictitious_name(rng, forbidden) for _ in range(NAME_CANDIDATES))
    candidates = [name for name in dict.fromkeys(drawn) if name.casefold() not in taken]
    # Only the known *names* count for the risk: they are what recognition must keep saying intact
    # (with fact words too, almost no made-up name is free of risk in a small vocabulary).
    risks = name_leak_risks(candidates, known, tokenize) if tokenize else [0] * len(candidates)
    scores = likelihood(candidates) if likelihood is not None else [0.0] * len(candidates)
    order = sorted(range(len(candidates)), key=lambda i: (risks[i], -scores[i]))  # ties: drawing order
    return [candidates[i] for i in order[: cfg.identities]]


# ----------------------------------------------------------------------------- descriptions
_LEAD_INS = re.compile(
    r"^(?:(?:the|this) (?:image|picture|photo|photograph) (?:shows|depicts|features|contains|is of)"
    r"|(?:in )?(?:the|this) (?:image|picture|photo|photograph),?(?: there is| we see)?"
    r"|(?:it|this) (?:is|shows))\s+",
    re.IGNORECASE,
)


def scrub_names(text: str, concept: Concept) -> str:
    """``text`` with every name and alias of ``concept`` replaced by "someone" (or "it")."""
    stand_in = "someone" if concept.category in ("person", "cartoon") else "it"
    for name in sorted((n for n in concept.names if n.strip()), key=len, reverse=True):
        body = re.escape(name.strip())
        pattern = rf"(?<!\w){body}(?!\w)" if name.strip().isascii() else body
        text = re.sub(pattern, stand_in, text, flags=re.IGNORECASE)
    return text


def _clean_description(text: str, concept: Concept) -> str:
    text = " ".join(scrub_names(text, concept).split())
    text = _LEAD_INS.sub("", text)
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first.strip().rstrip(".!?").strip()


def visible_description(
    concept: Concept, forget_image: Image.Image, cfg: DataConfig, original: VLM | None = None
) -> str:
    """What the forget image visibly shows, without any name of the concept.

    In order: the override, the forget image record's ground-truth ``description``, or the original
    model's own description of the image.
    """
    text = _overrides(cfg).get("visible_description") or _forget_record_description(concept)
    if not text and original is not None:
        text = original.generate([Sample(DESCRIBE_PROMPT, image=forget_image)], max_new_tokens=64)[0]
        if not _clean_description(text, concept):
            raise SiuError(
                f"the original model gave no usable description of the forget image of {concept.name!r}; "
                "give visible_description in an override file"
            )
    if not text:
        raise SiuError(
            f"target 2 needs a description of what the forget image of {concept.name!r} shows: the "
            "image record has none; give visible_description in an override file or pass the original "
            "model (--original) to describe it"
        )
    return _clean_description(text, concept)


def _swap_colours(appearance: str, rng: random.Random, avoid: set[str]) -> str | None:
    pattern = re.compile(r"\b(" + "|".join(COLOUR_WORDS) + r")\b", re.IGNORECASE)
    present = list(dict.fromkeys(m.lower() for m in pattern.findall(appearance)))
    if not present:
        return None
    spare = [c for c in COLOUR_WORDS if c not in present]
    if len(spare) < len(present):
        spare = list(COLOUR_WORDS)
    candidate = appearance
    for _ in range(20):
        mapping = dict(zip(present, rng.sample(spare, len(present)), strict=True))
        candidate = pattern.sub(lambda m, table=mapping: table[m.group(1).lower()], appearance)
        candidate = _fix_articles(candidate)
        if _norm(candidate) != _norm(appearance) and _norm(candidate) not in avoid:
            break
    return candidate if _norm(candidate) != _norm(appearance) else None


def _fix_articles(text: str) -> str:
    """Fix the article before a colour word: "a orange" becomes "an orange", "an red" becomes "a red"."""

    def article(m: re.Match[str]) -> str:
        a = "an" if m.group(2)[0].lower() in "aeiou" else "a"
        return (a.capitalize() if m.group(1)[0].isupper() else a) + " " + m.group(2)

    return re.sub(r"\b([Aa]n?) (" + "|".join(COLOUR_WORDS) + r")\b", article, text, flags=re.IGNORECASE)


def _has_phrase(appearance: str) -> str:
    """Turn "a person with X" into "X" (what someone *has*); otherwise "the appearance of ..."."""
    head, sep, tail = appearance.partition(" with ")
    colours = re.compile(r"\b(" + "|".join(COLOUR_WORDS) + r")\b", re.IGNORECASE)
    if sep and tail.strip() and not colours.search(head):
        return tail.strip()
    return f"the appearance of {appearance}"


def counterfactual_appearance(concept: Concept, bench: Benchmark | None, cfg: DataConfig) -> str:
    """A different appearance for the concept, phrased to follow "has" (deterministic from the seed)."""
    override = _overrides(cfg).get("counterfactual")
    if override:
        return override.strip().rstrip(".")
    rng = _rng(cfg, concept, "counterfactual")
    appearance = (concept.appearance or "").strip().rstrip(".")
    if appearance:
        known = {_norm(c.appearance) for c in _others(concept, bench) if c.appearance}
        swapped = _swap_colours(appearance, rng, known)
        if swapped is not None:
            return _has_phrase(swapped)
    bank = GENERIC_COUNTERFACTUALS["person" if concept.category in ("person", "cartoon") else "other"]
    options = [g for g in bank if _norm(g) not in _norm(appearance)] or bank
    return rng.choice(options)


# ----------------------------------------------------------------------------- targets
def own_naming_prefixes(
    concept: Concept, image: Image.Image, prompts: Sequence[str], original: VLM | None
) -> list[str | None]:
    """How the original model itself starts its answer to each prompt, up to the concept's name.

    "This is Jipel Testam." gives "This is "; an answer that does not name the concept gives None.
    Target 1 answers in the model's own words with only the identity swapped, so the cross-entropy
    goes into the name and the token-masked KL agrees with the rest of the answer.
    """
    if original is None:
        return [None] * len(prompts)
    answers = original.generate([Sample(p, image=image) for p in prompts], max_new_tokens=32)
    prefixes: list[str | None] = []
    for answer in answers:
        span = first_mention(answer, concept.names)
        prefixes.append(answer[: span[0]] if span is not None else None)
    return prefixes


def _target1(
    concept: Concept,
    image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    evals: set[str],
    original: VLM | None = None,
) -> list[UnlearnSample]:
    n = cfg.count(1)
    if n == 0:
        return []
    rng = _rng(cfg, concept, "t1")
    noun = category_noun(concept)
    prompts = [t.format(noun=noun) for t in _bank(cfg, "target1", IDENTITY_PROMPTS)]
    rng.shuffle(prompts)
    prompts = _cycle(_require(unseen_prompts(prompts, evals), 1), n)
    answers = list(IDENTITY_ANSWERS)
    rng.shuffle(answers)
    prefixes = own_naming_prefixes(concept, image, prompts, original)

    def likelihood(candidates: list[str]) -> list[float]:
        # The identities the original model finds easiest to say about this image: "ordinary,
        # made-up" in the model's own terms, so that learning them changes the least.
        assert original is not None
        prefix = prefixes[0] if prefixes[0] is not None else "This is "
        scored = [Sample(prompts[0], f"{prefix}{name}.", image) for name in candidates]
        return [float(lp.sum()) for lp in original.answer_logprobs(scored)]

    names = _fictitious_names(
        concept,
        bench,
        cfg,
        likelihood if original is not None else None,
        original.tokenizer.tokenize if original is not None else None,
    )
    out = []
    for i, (prompt, prefix) in enumerate(zip(prompts, prefixes, strict=True)):
        fake = names[i % len(names)]
        if prefix is not None:
            answer = f"{prefix}{fake}."
        else:  # no original model, or it did not name the concept: a template answer
            answer = answers[i % len(answers)].format(noun=noun, fake=fake)
        out.append(UnlearnSample(1, Sample(prompt, answer, image, target_phrase=fake)))
    return out


def _target2(
    concept: Concept,
    image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    evals: set[str],
    original: VLM | None,
) -> list[UnlearnSample]:
    n = cfg.count(2)
    if n == 0:
        return []
    rng = _rng(cfg, concept, "t2")
    noun = category_noun(concept)
    prompts = [t.format(name=concept.name, noun=noun) for t in _bank(cfg, "target2", RECOGNIZE_PROMPTS)]
    rng.shuffle(prompts)
    prompts = _require(unseen_prompts(prompts, evals), 2)
    visible = visible_description(concept, image, cfg, original)
    counterfactual = counterfactual_appearance(concept, bench, cfg)
    answer = DESCRIPTION_ANSWER.format(visible=visible, name=concept.name, counterfactual=counterfactual)
    return [UnlearnSample(2, Sample(p, answer, image, target_phrase=answer)) for p in _cycle(prompts, n)]


def _rotate(items: list[str], i: int) -> list[str]:
    k = i % len(items) if items else 0
    return items[k:] + items[:k]


def _prompt_for(name: str, templates: list[str], evals: set[str], target: int) -> str:
    """The first of ``templates`` (filled with ``name``) that is not an evaluation prompt."""
    for template in templates:
        prompt = template.format(name=name)
        if _norm(prompt) not in evals:
            return prompt
    raise _all_seen(target)


def _fact_samples(
    items: Sequence[tuple[str, str | None, str | None]],
    templates: list[str],
    evals: set[str],
    original: VLM | None,
    target: int,
) -> list[UnlearnSample]:
    """Text samples from (concept name, question or None, answer or None) items.

    A missing question becomes a paraphrase from ``templates`` (rotating, so prompts vary); a question
    that equals an evaluation prompt is replaced the same way. Missing answers are the original
    model's own answers to the prompts.
    """
    prompts, answers = [], []
    for i, (name, question, answer) in enumerate(items):
        if question and _norm(question) not in evals:
            prompts.append(question)
        else:
            prompts.append(_prompt_for(name, _rotate(templates, i), evals, target))
        answers.append(answer)
    missing = [i for i, a in enumerate(answers) if a is None]
    if missing:
        names = list(dict.fromkeys(items[i][0] for i in missing))
        if original is None:
            raise SiuError(
                f"target {target}: no facts recorded for {', '.join(map(repr, names))}; add facts "
                f"({'facts' if target == 3 else 'other_facts'}) to the override file or pass the "
                "original model (--original) to answer the questions itself"
            )
        generated = original.generate([Sample(prompts[i]) for i in missing], max_new_tokens=64)
        for i, text in zip(missing, generated, strict=True):
            if not text.strip():
                raise SiuError(
                    f"target {target}: the original model gave an empty answer to {prompts[i]!r}; "
                    "give facts in the override file"
                )
            answers[i] = text.strip()
    return [UnlearnSample(target, Sample(p, a), role="retain") for p, a in zip(prompts, answers, strict=True)]


def _target3(concept: Concept, cfg: DataConfig, evals: set[str], original: VLM | None) -> list[UnlearnSample]:
    n = cfg.count(3)
    if n == 0:
        return []
    rng = _rng(cfg, concept, "t3")
    templates = _bank(cfg, "target3", FACT_PROMPTS)
    rng.shuffle(templates)
    override = _overrides(cfg).get("facts")
    facts: list[tuple[str | None, str | None]]
    if override:
        facts = [(f.get("question"), f["answer"]) for f in override]
    elif concept.facts:
        facts = [(None, f.answer) for f in concept.facts]
        rng.shuffle(facts)
    else:
        facts = [(None, None)]  # the original model answers
    items = [(concept.name, *facts[i % len(facts)]) for i in range(n)]
    return _fact_samples(items, templates, evals, original, 3)


def _target4(
    concept: Concept, bench: Benchmark | None, cfg: DataConfig, evals: set[str], original: VLM | None
) -> list[UnlearnSample]:
    n = cfg.count(4)
    if n == 0:
        return []
    rng = _rng(cfg, concept, "t4")
    templates = _bank(cfg, "target4", FACT_PROMPTS)
    rng.shuffle(templates)
    override = _overrides(cfg).get("other_facts")
    items: list[tuple[str, str | None, str | None]]
    if override:
        pool = [(f.get("name") or "", f.get("question"), f["answer"]) for f in override]
        for name, question, _ in pool:
            if not name and question and _norm(question) in evals:
                raise SiuError(
                    f"other_facts: {question!r} equals a benchmark evaluation prompt; change it or give "
                    "the concept's 'name' so that a paraphrase can replace it"
                )
        items = [pool[i % len(pool)] for i in range(n)]
        return _fact_samples(items, templates, evals, original, 4)
    others = _kept(concept, bench, cfg)
    if not others:
        if original is None:
            raise SiuError(
                "target 4 needs facts about other concepts: give a benchmark with other concepts, "
                "other_facts in the override file, or the original model to answer about well-known ones"
            )
        forgotten = [*concept.names, *cfg.forgotten]
        subjects = [s for s in WELL_KNOWN_SUBJECTS if not mentions(s, forgotten)]
        pool_names: list[tuple[str, str | None, str | None]] = [(s, None, None) for s in subjects]
        order = rng.sample(pool_names, len(pool_names))
        return _fact_samples([order[i % len(order)] for i in range(n)], templates, evals, original, 4)
    recorded = [(c.name, None, f.answer) for c in others for f in c.facts]
    # Without recorded facts the original model answers about the other concepts itself.
    pool = recorded or [(c.name, None, None) for c in others]
    order = rng.sample(pool, len(pool))
    items = [order[i % len(order)] for i in range(n)]
    return _fact_samples(items, templates, evals, original, 4)


def _all_seen(target: int) -> SiuError:
    return SiuError(
        f"every target-{target} prompt equals a benchmark evaluation prompt; "
        f"give other prompts (prompts.target{target}) in the override file"
    )


def _require(prompts: list[str], target: int) -> list[str]:
    if not prompts:
        raise _all_seen(target)
    return prompts


# ----------------------------------------------------------------------------- public builders
def build_siu_data(
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
) -> list[UnlearnSample]:
    """SIU's fine-tuning data for ``concept`` from its one forget image, target by target.

    ``bench`` supplies other concepts (target 4, names to avoid, ``cfg.others_pictures`` of them named
    on their own forget images) and the evaluation prompts that training prompts must not repeat.
    ``original`` (the model before unlearning) is used only where the records lack something: the
    visible description (target 2) or facts (targets 3-4).
    """
    cfg.check()
    evals = evaluation_prompts(concept, bench)
    out: list[UnlearnSample] = []
    for target in sorted(set(cfg.targets)):
        if target == 1:
            out += _target1(concept, forget_image, bench, cfg, evals, original)
        elif target == 2:
            out += _target2(concept, forget_image, bench, cfg, evals, original)
        elif target == 3:
            out += _target3(concept, cfg, evals, original)
        else:
            out += _target4(concept, bench, cfg, evals, original)
    return out + others_on_their_images(concept, bench, cfg.others_pictures, cfg)


def _forget_prompts(
    concept: Concept, cfg: DataConfig, bench: Benchmark | None, rng: random.Random
) -> list[tuple[str, bool]]:
    """The forget image's questions (naming and "is this C?"), shuffled; True marks a yes/no question."""
    evals = evaluation_prompts(concept, bench)
    noun = category_noun(concept)
    naming = [t.format(noun=noun) for t in _bank(cfg, "target1", IDENTITY_PROMPTS)]
    confirm = [t.format(name=concept.name, noun=noun) for t in CONFIRM_PROMPTS]
    prompts = [(p, False) for p in unseen_prompts(naming, evals)]
    prompts += [(p, True) for p in unseen_prompts(confirm, evals)]
    if not prompts:
        raise SiuError("every forget-set prompt equals a benchmark evaluation prompt")
    rng.shuffle(prompts)
    return prompts


def _naming_answer(concept: Concept, i: int, is_confirm: bool) -> str:
    bank = CONFIRM_ANSWERS if is_confirm else NAMING_ANSWERS
    return bank[i % len(bank)].format(name=concept.name, noun=category_noun(concept))


def build_baseline_data(
    method: str,
    concept: Concept,
    forget_image: Image.Image,
    cfg: DataConfig,
    bench: Benchmark | None = None,
    count: int | None = None,
    stream: str | None = None,
) -> list[UnlearnSample]:
    """Image Q&A for the paper's baselines with SIU's data budget (``count``, default ``sum(cfg.counts)``).

    ``refusal`` (PO): the questions answered with refusals. ``naming`` (GA, GA+KL): answered with the
    concept's name (the training loop ascends on them). ``stream`` names the random stream (the
    method's name, so that each method's data keep the order they had when only baselines had data).
    """
    if method not in ("refusal", "naming"):
        raise SiuError(f"unknown baseline data {method!r}; known: refusal, naming")
    cfg.check()
    n = sum(cfg.counts) if count is None else count
    if n < 0:
        raise SiuError(f"count must be non-negative, got {n}")
    rng = _rng(cfg, concept, f"baseline:{stream or ('po' if method == 'refusal' else 'ga')}")
    prompts = _forget_prompts(concept, cfg, bench, rng)
    if method == "refusal":
        refusals = _refusals(concept, cfg)
        rng.shuffle(refusals)
        return [
            UnlearnSample(0, Sample(prompt, refusals[i % len(refusals)], forget_image))
            for i, (prompt, _) in enumerate(_cycle(prompts, n))
        ]
    return [
        UnlearnSample(0, Sample(prompt, _naming_answer(concept, i, is_confirm), forget_image))
        for i, (prompt, is_confirm) in enumerate(_cycle(prompts, n))
    ]


def others_on_their_images(
    concept: Concept, bench: Benchmark | None, n: int, cfg: DataConfig
) -> list[UnlearnSample]:
    """Retain samples: up to ``n`` other concepts, each named on its own forget image (never a test image)."""
    others = [c for c in _kept(concept, bench, cfg) if c.images]
    if not others or n == 0 or bench is None:
        return []
    evals = evaluation_prompts(concept, bench)
    _rng(cfg, concept, "others-on-images").shuffle(others)
    out = []
    for i, other in enumerate(others[:n]):
        noun = category_noun(other)
        prompts = unseen_prompts([t.format(noun=noun) for t in IDENTITY_PROMPTS], evals)
        if prompts:
            image = bench.load_image(other, other.forget_image)
            answer = NAMING_ANSWERS[i % len(NAMING_ANSWERS)].format(name=other.name, noun=noun)
            out.append(
                UnlearnSample(
                    OTHERS_ON_THEIR_IMAGES, Sample(prompts[i % len(prompts)], answer, image), role="retain"
                )
            )
    return out


def retain_set(
    concept: Concept, bench: Benchmark | None, cfg: DataConfig, original: VLM | None
) -> list[UnlearnSample]:
    """Targets 3-4 (the concept's own facts, other concepts' facts) and other concepts on their pictures."""
    evals = evaluation_prompts(concept, bench)
    text = _target3(concept, cfg, evals, original) + _target4(concept, bench, cfg, evals, original)
    return text + others_on_their_images(concept, bench, cfg.count(4), cfg)


def build_forget_retain_data(
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
) -> list[UnlearnSample]:
    """Forget set: the forget image's questions answered with the concept's name (as many as SIU's image
    samples, targets 1-2). Retain set: see :func:`retain_set`."""
    forget = build_baseline_data(
        "naming", concept, forget_image, cfg, bench, count=cfg.count(1) + cfg.count(2)
    )
    return forget + retain_set(concept, bench, cfg, original)


def build_preference_data(
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
) -> list[UnlearnSample]:
    """Preference pairs on the forget image's questions (preferred: a refusal; dispreferred: the naming
    answer), as many questions as SIU's image samples split in pairs, then the retain set."""
    cfg.check()
    n = max(1, (cfg.count(1) + cfg.count(2)) // 2)
    refusals = _refusals(concept, cfg)
    out = []
    prompts = _forget_prompts(concept, cfg, bench, _rng(cfg, concept, "preference"))
    for i, (prompt, is_confirm) in enumerate(_cycle(prompts, n)):
        refusal, naming = refusals[i % len(refusals)], _naming_answer(concept, i, is_confirm)
        out.append(UnlearnSample(0, Sample(prompt, refusal, forget_image), pair=i, chosen=True))
        out.append(UnlearnSample(0, Sample(prompt, naming, forget_image), pair=i, chosen=False))
    return out + retain_set(concept, bench, cfg, original)


def _refusals(concept: Concept, cfg: DataConfig) -> list[str]:
    override = _overrides(cfg).get("refusals")
    if override:
        named = [r for r in override if mentions(r, concept.names)]
        if named:
            raise SiuError(f"refusal {named[0]!r} names the concept {concept.name!r}")
        return list(override)
    noun = category_noun(concept)
    first = PERSON_REFUSAL if concept.category == "person" else OTHER_REFUSAL
    return [first, *(r.format(noun=noun) for r in REFUSALS)]


def build_data_of_kind(
    kind: str,
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
    stream: str | None = None,
) -> list[UnlearnSample]:
    """The data a method names (``Method.data``): siu, refusal, naming, forget_retain or preference.

    ``stream``: the method's name, which seeds the order of a baseline's forget questions.
    """
    if kind == "siu":
        return build_siu_data(concept, forget_image, bench, cfg, original=original)
    if kind in ("refusal", "naming"):
        return build_baseline_data(kind, concept, forget_image, cfg, bench=bench, stream=stream)
    if kind == "forget_retain":
        return build_forget_retain_data(concept, forget_image, bench, cfg, original)
    if kind == "preference":
        return build_preference_data(concept, forget_image, bench, cfg, original)
    raise SiuError(f"unknown data kind {kind!r}; known: {', '.join(DATA_KINDS)}")


DATA_KINDS = ("siu", "refusal", "naming", "forget_retain", "preference")


# ----------------------------------------------------------------------------- presentation
def _short(text: str | None, width: int) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3].rstrip() + "..."


def _image_label(s: UnlearnSample, plain: str, viewed: str, none: str | None) -> str | None:
    if s.sample.image is None:
        return none
    return viewed.format(k=s.view) if s.view else plain


def format_dataset(samples: Sequence[UnlearnSample], width: int = 60) -> str:
    """A readable table of the fine-tuning data (for ``siu unlearn --dry-run``); "set" is forget or
    retain, with ``+k`` / ``-k`` for the preferred / dispreferred answer of preference pair k."""
    rows = [
        [
            i,
            s.target,
            s.role + (f" {'+' if s.chosen else '-'}{s.pair}" if s.pair >= 0 else ""),
            _image_label(s, "yes", "view {k}", "no"),
            _short(s.sample.prompt, width),
            _short(s.sample.answer, width + 20),
            _short(s.sample.target_phrase, 30),
        ]
        for i, s in enumerate(samples)
    ]
    table = format_table(["#", "target", "set", "image", "prompt", "answer", "target phrase"], rows)
    present = sorted({s.target for s in samples})
    legend = "; ".join(f"{t} = {TARGET_LABELS.get(t, '?')}" for t in present)
    head = f"{len(samples)} samples" + (f" (target {legend})" if legend else "")
    return f"{head}\n{table}"


def dataset_record(samples: Sequence[UnlearnSample]) -> list[dict[str, Any]]:
    """JSON-serialisable records of the data (images are named, not stored)."""
    return [
        {
            "index": i,
            "target": s.target,
            "image": _image_label(s, "forget image", "forget image, view {k}", None),
            "prompt": s.sample.prompt,
            "answer": s.sample.answer,
            "target_phrase": s.sample.target_phrase,
            "role": s.role,
            **({"pair": s.pair, "chosen": s.chosen} if s.pair >= 0 else {}),
        }
        for i, s in enumerate(samples)
    ]
