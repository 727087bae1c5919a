"""Reduce per-token log-probabilities of a candidate's text to one score.

- `sum`: log P(text | prompt), the plain generation likelihood (P5, BIGRec). Favours short titles.
- `mean`: per-token mean, a length normalisation.
- `calibrated`: log P(text | prompt) - log P(text | content-free prompt), the contextual
  calibration of Zhao et al. (2021): removes the item's prior so popular-sounding or short titles
  do not win by default. The content-free prompt is the template rendered with an empty history.
"""

from __future__ import annotations

import typing

import numpy as np

from llmrec.config import ScoringMode
from llmrec.errors import ConfigError

MODES = typing.get_args(ScoringMode)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"rank.scoring: expected one of {list(MODES)}; got {mode!r}")
    return mode


def reduce(token_logprobs: list[np.ndarray], mode: str, null: list[float] | None = None) -> np.ndarray:
    sums = np.array([float(t.sum()) for t in token_logprobs])
    if mode == "sum":
        return sums
    if mode == "mean":
        return np.array([float(t.mean()) for t in token_logprobs])
    assert null is not None and len(null) == len(sums)
    return sums - np.asarray(null)
