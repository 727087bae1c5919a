"""`llmrec sid build`: semantic IDs for the prepared dataset's items, from item vectors.

`sid.vectors` names where the vectors come from: `content-st` (the embedded sentence encoder on
each item's text), `content-lm` (the configured LM's mean-pooled hidden states), a baseline run
directory holding `vectors.npz` (bpr, mf, als, sasrec: collaborative vectors), or several joined
with `+` (each part centred and scaled to unit length first). The codes and their statistics go to
`<out_dir>/sid/<name>/` (`codes.json`, `sid.json`), which `train.sid` names for training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import Config
from llmrec.data.dataset import Dataset
from llmrec.data.prepared import open_prepared
from llmrec.data.split import natural_key
from llmrec.errors import ConfigError, DataError
from llmrec.sid.codes import SemanticIDs, assign, normalised


def text_vectors(source: str, cfg: Config, ds: Dataset, ids: list[str], log=print) -> np.ndarray:
    """Mean-pooled vectors of each item's text (`item/text_v1`), from the content encoders' cache."""
    from llmrec.content.cache import load_or_encode
    from llmrec.content.encoders import LMEncoder, STEncoder
    from llmrec.content.text import item_texts, load_item_template

    template = load_item_template()
    m = cfg.model
    encoder = STEncoder() if source == "content-st" else LMEncoder(m.name, m.adapter, m.device, m.dtype)
    texts = item_texts(template, [ds.items[i] for i in ids], ds.item_noun)
    return load_or_encode(encoder, template, ids, texts, log=log)["mean"]


def run_vectors(source: str, ids: list[str]) -> np.ndarray:
    """A baseline run's item vectors in `ids` order (every item must have one)."""
    from llmrec.baselines.vectors import Vectors

    v = Vectors.load(Path(source))
    row = {i: k for k, i in enumerate(v.item_ids)}
    missing = [i for i in ids if i not in row]
    if missing:
        raise DataError(f"{source}: {len(missing)} items have no vector (e.g. {missing[:3]}); use text vectors "
                        "(sid.vectors=content-st) or join them (sid.vectors=content-st+<run>)")
    return v.item_vectors[[row[i] for i in ids]]


def item_vectors(spec: str, cfg: Config, ds: Dataset, ids: list[str], log=print) -> np.ndarray:
    parts = []
    for source in spec.split("+"):
        if source in ("content-st", "content-lm"):
            parts.append(text_vectors(source, cfg, ds, ids, log))
        elif Path(source).exists():
            parts.append(run_vectors(source, ids))
        else:
            raise ConfigError(f"sid.vectors: {source!r} is neither content-st, content-lm nor a baseline run "
                              "directory with vectors.npz")
    return np.concatenate([normalised(p) for p in parts], axis=1)


def default_name(cfg: Config) -> str:
    s = cfg.sid
    if s.name:
        return s.name
    label = "+".join(Path(x).name.split("--")[0] if Path(x).exists() else x for x in s.vectors.split("+"))
    return f"{label}-{s.levels}x{s.codebook}"


def run(cfg: Config, log=print) -> dict[str, Any]:
    prepared = open_prepared(cfg, log)
    cfg = prepared.cfg
    ds = prepared.dataset(log)
    folder = prepared.out_dir / "sid" / default_name(cfg)
    log(f"sid build: {cfg.sid.levels} levels of {cfg.sid.codebook} codes from {cfg.sid.vectors} for "
        f"{len(ds.items)} items -> {folder}")
    ids = sorted(ds.items, key=natural_key)
    vectors = item_vectors(cfg.sid.vectors, cfg, ds, ids, log)
    sid = assign(ids, vectors, cfg.sid.levels, cfg.sid.codebook, cfg.sid.seed,
                 {"vectors": cfg.sid.vectors, "dataset_hash": prepared.split().dataset_hash})
    sid.save(folder)
    stats = sid.stats()
    log(f"codes per level {stats['sizes']}; {stats['items_sharing_a_code_before_the_last_level']} items share "
        f"their first {cfg.sid.levels} codes with another (largest group {stats['largest_group']}); "
        + ", ".join(f"level {k + 1}: {stats[f'level_{k + 1}']['used']} codes used" for k in range(cfg.sid.levels)))
    log(f"wrote {folder / 'codes.json'} and {folder / 'sid.json'}")
    return {"folder": folder, "sid": SemanticIDs.load(folder), "stats": stats}
