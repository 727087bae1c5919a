"""Collaborative-token slots: where a template puts a user's or an item's vector.

A template writes `{{ h | cf }}` after a history item, `{{ candidate | cf }}` after a candidate or
`{{ user | cf }}` once. The filter renders a marker naming what goes there; `extract` turns the
markers of a rendered prompt into the model's placeholder token and the ordered list of slot keys,
and `fill` swaps each placeholder id of the token ids for the slot's own id. Slot ids lie past the
vocabulary (`SlotIds.id_of`), so prompts stay plain lists of ints through every style, the prefix
sharing and the backends; only the model's input embedding layer knows to read them as vectors
(`llmrec.models.cf`).

The marker carries a per-process random tag, so text in the data (a title) cannot forge one. A
title that contains the placeholder token itself makes the placeholder count differ from the
slot count, which `fill` refuses rather than shifting every vector by one.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Protocol

import jinja2

from llmrec.errors import TemplateError

_TAG = secrets.token_hex(6)
_MARK = re.compile("\x00cf" + _TAG + r":(user|item):([^\x00]*)\x00")
KINDS = ("user", "item")


@jinja2.pass_context
def cf_filter(context: jinja2.runtime.Context, value: Any) -> str:
    """`{{ x | cf }}`: the slot of the user (when `x` is the `user` variable) or of an item."""
    if not isinstance(value, dict) or "id" not in value:
        raise jinja2.TemplateRuntimeError("the cf filter takes the user or an item (history entry, candidate)")
    kind = "user" if value is context.get("user") else "item"
    return f"\x00cf{_TAG}:{kind}:{value['id']}\x00"


def extract(text: str, placeholder: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Replace slot markers by the placeholder token text; the slot keys (kind, id) in order."""
    keys = tuple((m.group(1), m.group(2)) for m in _MARK.finditer(text))
    return _MARK.sub(lambda _: placeholder, text), keys


class SlotIds(Protocol):
    """What prompts and the ranker need from a collaborative-vector table (`llmrec.models.cf.SlotTable`)."""

    placeholder: str  # the token text written where a vector goes
    placeholder_id: int
    residual: bool  # scores get alpha x the baseline's score added (`offsets`)

    def id_of(self, kind: str, key: str) -> int:
        """The token id (past the vocabulary) of this user's or item's vector; unknown ids get the fallback."""
        ...

    def set_stage(self, stage: str) -> None:
        """Read the user vectors that score the `test` or the `valid` target."""
        ...

    def offsets(self, user: str, items: list[str]) -> Any:
        """The residual's addition to each item's score."""
        ...


def fill(ids: list[int], slot_ids: tuple[int, ...], placeholder_id: int, where: str) -> list[int]:
    """Put `slot_ids` at the placeholder positions of `ids`, in order; the counts must agree."""
    at = [k for k, t in enumerate(ids) if t == placeholder_id]
    if len(at) != len(slot_ids):
        raise TemplateError(f"{where}: the prompt has {len(at)} placeholder tokens for {len(slot_ids)} collaborative "
                            "vectors; the data's text (a title?) contains the reserved placeholder token")
    out = list(ids)
    for k, s in zip(at, slot_ids):
        out[k] = s
    return out
