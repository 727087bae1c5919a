"""llmrec: open causal language models as recommenders, evaluated against classic baselines."""

__version__ = "0.1.0"
