"""Shipped TOML configs, installed as the package data `llmrec.configs` (`ml100k.toml` is the default)."""
