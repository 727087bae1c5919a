"""Engines that run a ranking job beyond this process: `ray` (data-parallel on Ray Data actors)."""
