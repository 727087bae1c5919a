"""The chat web page served by `llmrec serve` at / (one static HTML file, no build step)."""
