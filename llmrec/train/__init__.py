"""Adapting the LM to ranking: training examples from templates, and the fine-tuning loop."""
