"""Item vectors on disk, keyed by what they depend on: a second run encodes nothing.

The key is the sha256 of the encoder's identity (model, adapter, dtype), the item template's
sha256 and the sha256 of the rendered texts in order; the file (`<encoder>-<key>.npz` under
`$LLMREC_HOME/content`) holds the item ids, one array per pooling and the key's parts, and is
written atomically. Encoding the whole catalogue once serves every split of a dataset, the
cold-start ones included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmrec import assets
from llmrec.content.encoders import Encoder
from llmrec.errors import DataError
from llmrec.prompts.render import Template


def default_root() -> Path:
    return assets.home() / "content"


def cache_key(encoder: Encoder, template: Template, texts: Sequence[str]) -> dict[str, str]:
    """The parts of the key, and `key`, the sha256 of them all."""
    parts = {**encoder.identity(), "template": template.name, "template_sha256": template.sha256,
             "texts_sha256": hashlib.sha256("\x1e".join(texts).encode()).hexdigest(), "items": str(len(texts))}
    return {**parts, "key": hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()}


def load_or_encode(encoder: Encoder, template: Template, item_ids: Sequence[str], texts: Sequence[str],
                   root: Path | None = None, log=print) -> dict[str, np.ndarray]:
    """Pooling name -> (len(item_ids), d) vectors, read from the cache or encoded and saved."""
    assert len(item_ids) == len(texts)
    key = cache_key(encoder, template, texts)
    path = (root or default_root()) / f"{encoder.name}-{key['key'][:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if [str(x) for x in z["item_ids"]] == list(item_ids):
                    return {p: z[f"vectors_{p}"] for p in encoder.poolings}
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: unreadable cached item vectors ({e}); delete the file to re-encode") from None
    log(f"encoding {len(texts)} items with {key['model']} ({encoder.name}); cached at {path}")
    vectors = encoder.encode(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, item_ids=np.array(list(item_ids), dtype=str), key=np.array(json.dumps(key)),
             **{f"vectors_{p}": v.astype(np.float32) for p, v in vectors.items()})
    tmp.replace(path)
    return vectors
