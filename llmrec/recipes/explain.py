"""`llmrec explain`: the knowledge-graph paths behind a score, in words (optionally said by the LM).

Fits the meta-path scorer (kg-path) on the prepared split, then prints the highest-weighted paths
from the user's history to the item; `verbalize` has the configured LM (`[model]`, greedy,
bounded) say the top three in one sentence, printed last.
"""

from __future__ import annotations

import dataclasses

from llmrec import baselines
from llmrec.config import Config
from llmrec.data.prepared import open_prepared
from llmrec.kg.explain import explain, verbalize


def run(cfg: Config, user: str, item: str, top: int = 5, kg: str = "", verbalize_with: str = "",
        max_new_tokens: int = 48, log=print) -> list[str]:
    """The explanation's lines (printed through `log` as well); `verbalize_with`: a kg-explain
    template to have the LM say the paths in words (empty: paths only)."""
    from llmrec.prompts.render import load_template

    template = load_template(verbalize_with, "kg-explain") if verbalize_with else None  # before anything loads
    cfg = dataclasses.replace(cfg, baseline=dataclasses.replace(cfg.baseline, name="kg-path"))
    prepared = open_prepared(cfg, log=lambda *_: None)
    data = baselines.TrainData.from_split(prepared.split())
    model, _ = baselines.from_config(prepared.cfg.baseline)
    if kg:
        model.kg = kg
    else:
        model.use_data(prepared.cfg.data)
    dataset = prepared.dataset(log=lambda *_: None)
    titles = {k: it.title for k, it in dataset.items.items()}
    model.fit(data)
    lines = list(explain(model, titles, user, item, top))
    for line in lines:
        log(line)
    if template is not None:
        from llmrec.backends import backend_from_config
        from llmrec.models.generate import Generator
        from llmrec.models.load import load_tokenizer

        m = prepared.cfg.model
        backend = backend_from_config(prepared.cfg)
        try:
            text = verbalize(Generator(backend, load_tokenizer(m.name)), template, model, titles, user, item,
                             min(top, 3), max_new_tokens, prepared.cfg.data.item_noun)
        finally:
            backend.close()
        lines.append(f"in words ({m.name}{', adapter ' + m.adapter if m.adapter else ''}): {text}")
        log(lines[-1])
    return lines
