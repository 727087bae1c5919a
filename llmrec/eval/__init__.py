"""Metrics, run directories, comparisons and reports."""
