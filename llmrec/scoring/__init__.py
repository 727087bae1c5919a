"""Ranking candidates by LM likelihood."""
