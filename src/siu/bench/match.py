"""Does an answer contain a target string? Case-insensitive, on word boundaries.

Word boundaries keep "yes" from matching "eyes" and a name from matching inside a longer word;
for scripts without spaces (Chinese, Japanese) plain containment is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=4096)
def _pattern(target: str) -> re.Pattern[str]:
    body = re.escape(target.strip())
    if target.strip().isascii():
        return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)
    return re.compile(body, re.IGNORECASE)


def mentions(answer: str, targets: Iterable[str]) -> bool:
    return any(t.strip() and _pattern(t).search(answer) for t in targets)


def first_mention(answer: str, targets: Iterable[str]) -> tuple[int, int] | None:
    """``(start, end)`` of the earliest target in ``answer`` (the longest one at that place), or None."""
    spans = [m.span() for t in targets if t.strip() for m in [_pattern(t).search(answer)] if m]
    return min(spans, key=lambda span: (span[0], -span[1])) if spans else None
