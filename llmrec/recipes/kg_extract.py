"""`llmrec kg-extract`: facts about items from the LM, as a triple file, scored.

Renders a kg-extract template per item (a seeded sample of `items` items, or all), generates
greedily on the configured backend and model (`[model]`, with its adapter), parses the answers
strictly (`llmrec/kg/extract.py`) and writes three files: the triples (CSV), the raw generations
(`.raw.jsonl`) and the evaluation (`.eval.json`: precision and recall against the items file for
genre / year / decade, pairwise agreement with the dataset's KG for the relations it has).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import Config
from llmrec.data.loaders import load_dataset
from llmrec.errors import ConfigError, DataError
from llmrec.kg import extract as kx
from llmrec.kg import extract_eval, triples
from llmrec.kg.graph import KnowledgeGraph
from llmrec.prompts.render import load_template


def run(cfg: Config, template_name: str = kx.DEFAULT_TEMPLATE, items: int = 0, seed: int = 0, out: str = "",
        max_new_tokens: int = 96, batch_size: int = 8, log=print) -> dict[str, Any]:
    """Extract, write, evaluate; returns the report written to `<out>.eval.json`."""
    from llmrec.backends import backend_from_config
    from llmrec.models.generate import Generator
    from llmrec.models.load import load_tokenizer

    for name, value, low in (("--items", items, 0), ("--max-new-tokens", max_new_tokens, 1),
                             ("--batch-size", batch_size, 1)):
        if value < low:
            raise ConfigError(f"{name}: must be >= {low}; got {value}")
    template = load_template(template_name, "kg-extract")  # a template error fails before the model loads
    dataset = load_dataset(cfg.data, log=lambda *_: None)
    ids = list(dataset.items)
    if items and items < len(ids):
        pick = np.random.default_rng(seed).choice(len(ids), size=items, replace=False)
        ids = [ids[k] for k in sorted(pick)]
    path = Path(out or Path(cfg.out_dir) / "kg" / f"extracted-{Path(template_name).stem}.csv")
    log(f"kg-extract: {template.name} on {cfg.model.name} for {len(ids)} items -> {path}")
    started = time.time()
    backend = backend_from_config(cfg)
    try:
        generator = Generator(backend, load_tokenizer(cfg.model.name), batch_size=batch_size)
        ex = kx.extract(generator, template, [dataset.items[i] for i in ids], cfg.data.item_noun, max_new_tokens)
    finally:
        backend.close()
    seconds = time.time() - started
    kx.write_triples(path, ex.triples())
    raw = kx.write_raw(path.with_name(path.name + ".raw.jsonl"), ex)
    rows = extract_eval.by_metadata(ex.facts, dataset.items)
    try:
        kg = KnowledgeGraph.build(triples.read(triples.locate(cfg.data)), list(dataset.items))
        pairs, kg_note = extract_eval.pairwise(ex.facts, kg), ""
    except DataError as e:
        pairs, kg_note = [], f"no pairwise agreement: {e}"
    dropped = ", ".join(f"{r} {ex.dropped[r]}" for r in kx.DROP_REASONS if ex.dropped[r]) or "none"
    log(f"{len(ids)} items in {seconds:.0f}s: {ex.lines} lines, {ex.kept} facts kept "
        f"({ex.example_copies} copied from the worked example), dropped: {dropped}")
    log(extract_eval.table(rows))
    if pairs:
        log("\npairwise agreement with the dataset's KG (pairs of items sharing a value):")
        log(extract_eval.pairwise_table(pairs))
    elif kg_note:
        log(kg_note)
    report = {"template": template.name, "template_sha256": template.sha256, "model": cfg.model.name,
              "adapter": cfg.model.adapter, "dataset": cfg.data.dataset, "items": len(ids), "seed": seed,
              "max_new_tokens": max_new_tokens, "seconds": round(seconds, 1), "lines": ex.lines,
              "kept": ex.kept, "example_copies": ex.example_copies,
              "dropped": {r: ex.dropped[r] for r in kx.DROP_REASONS}, "relations": rows, "pairwise": pairs,
              "triples": str(path)}
    report_path = path.with_name(path.name + ".eval.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {path} ({ex.kept} triples), {raw}, {report_path}")
    return report
