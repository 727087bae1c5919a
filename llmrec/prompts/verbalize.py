"""Answer verbalisers: the tokens whose probability is read for letter and yes/no templates."""

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


def answer_token(tokenizer, prompt_text: str, answer: str, add_special_tokens: bool, what: str) -> int:
    """The single token the model emits for `answer` right after `prompt_text`.

    Read from the joint tokenisation, so a leading space ("Answer: A" -> " A") or its absence
    after a newline is handled the way the model saw it in training.
    """
    text = answer if prompt_text.endswith((" ", "\n", "(", "\t")) else " " + answer
    base = tokenizer(prompt_text, add_special_tokens=add_special_tokens).input_ids
    whole = tokenizer(prompt_text + text, add_special_tokens=add_special_tokens).input_ids
    extra = whole[len(base):]
    if whole[:len(base)] != base or len(extra) != 1:
        raise TemplateError(f"{what}: answer {answer!r} is not a single token after the prompt "
                            f"(got {len(extra)} tokens); end the prompt so that it is, e.g. with 'Answer: ('")
    return extra[0]
