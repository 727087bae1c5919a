"""Answer labels of list templates (the token boundary rule lives in `PromptBuilder.answer_ids`)."""

from __future__ import annotations

import string

from llmrec.errors import TemplateError

LETTERS = string.ascii_uppercase


def letters(n: int) -> list[str]:
    """(A)...(T) labels of LlamaRec (Yue et al., 2023); at most 26 candidates per prompt."""
    if n > len(LETTERS):
        raise TemplateError(f"letters templates label at most {len(LETTERS)} candidates; got {n} "
                            f"(use candidates.n <= 26 or a title/yesno template)")
    return list(LETTERS[:n])
