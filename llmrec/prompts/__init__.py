"""Prompt templates: Jinja files rendered per user, with a token budget."""
