"""Recipes: each a readable top-to-bottom `run(cfg) -> Result`."""
