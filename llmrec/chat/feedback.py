"""Feedback in a chat turn's text: "like 2", "dislike 1 and 3", "more like 2", or free text.

Numbers are positions in the latest list (1-based). "more like N" likes item N and asks for its
neighbours (it joins the constraints' `like`). What is left of the text once the commands are
taken out is a request, read like any other ("like 2 but older than 1990").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMS = r"#?(\d{1,3}(?:\s*(?:,|and|&|\+)\s*#?\d{1,3})*)"
_PATTERNS = (
    ("more", rf"\b(?:more|others?|something)\s+like\s+(?:number\s+|no\.?\s*)?{_NUMS}\b"),
    ("dislike", (rf"(?:\b(?:dislike|don't like|do not like|didn't like|hate|not|no|skip)|\U0001F44E)\s*"
                 rf"(?:number\s+|no\.?\s*)?{_NUMS}\b")),
    ("like", rf"(?:\b(?:like|liked|love|loved|want)|\U0001F44D)\s*(?:number\s+|no\.?\s*)?{_NUMS}\b"),
)


@dataclass
class Commands:
    likes: list[int] = field(default_factory=list)
    dislikes: list[int] = field(default_factory=list)
    more_like: list[int] = field(default_factory=list)
    rest: str = ""  # the text with the commands taken out

    def __bool__(self) -> bool:
        return bool(self.likes or self.dislikes or self.more_like)


def parse_feedback(text: str) -> Commands:
    """The like / dislike / more-like commands in `text` and the remaining request text."""
    out = Commands()
    t = text.replace("\u2019", "'")
    for kind, pattern in _PATTERNS:
        for m in list(re.finditer(pattern, t, flags=re.IGNORECASE)):
            nums = [int(n) for n in re.findall(r"\d+", m.group(1))]
            {"more": out.more_like, "dislike": out.dislikes, "like": out.likes}[kind].extend(nums)
        t = re.sub(pattern, " ", t, flags=re.IGNORECASE)
    out.rest = " ".join(t.split()).strip(" ,.;!") if re.search(r"[A-Za-z]{3}", t) else ""
    out.rest = re.sub(r"^(?:and|but|also|please)\b\s*", "", out.rest, flags=re.IGNORECASE)
    return out
