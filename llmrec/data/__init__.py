"""Data half of the flow: datasets, splits and candidate sets."""

from llmrec.data.dataset import Dataset, Interaction, Item

__all__ = ["Dataset", "Interaction", "Item"]
