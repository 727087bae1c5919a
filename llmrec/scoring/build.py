"""The LLM ranker a config describes, built in one place for every front-end.

`llmrec rank` (both engines), `llmrec serve` and the chat loop all call `build_ranker`, so a
served score, a Ray actor's score and a batch job's score come from the same template, model,
adapter, backend, scoring mode, prompt budget and seed. The adapter checks run first, before any
model loads (`check_adapter`): a missing folder, a `| cf` template without a projector, or an adapter trained on
another template (allowed, flagged).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmrec.backends import Backend, backend_from_config
from llmrec.config import Config
from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError
from llmrec.models.load import load_tokenizer
from llmrec.prompts.render import Template
from llmrec.registry import STYLES
from llmrec.scoring.rank import LLMRanker
from llmrec.sid.codes import CODES, SemanticIDs, with_codes


def check_adapter(cfg: Config, template: Template, log=print) -> None:
    """`model.adapter` must be a peft folder; a `| cf` template needs one with a projector (`cf.json`);
    an adapter trained on another template is allowed but flagged."""
    adapter = cfg.model.adapter
    if adapter:
        path = Path(adapter)
        if not path.is_dir() or not (path / "adapter_config.json").is_file():
            raise ConfigError(f"model.adapter: {adapter} is not a peft adapter folder (no adapter_config.json); "
                              "`llmrec train` writes one to <train.out>/best")
        meta = path / "template.json"
        if meta.is_file():
            trained = json.loads(meta.read_text())
            if trained.get("sha256") != template.sha256:
                log(f"warning: adapter {adapter} was trained on template {trained.get('template')} "
                    f"(sha256 {str(trained.get('sha256'))[:12]}), not on {template.name} as ranked now")
    if template.uses_cf and not (adapter and (Path(adapter) / "cf.json").is_file()):
        raise ConfigError(f"{template.name} places collaborative vectors (| cf): set model.adapter to an adapter "
                          "trained on it (`llmrec train` with train.cf.vectors writes one)")
    if STYLES.entry(template.style).capabilities.get("needs_sid") and not (adapter and (Path(adapter) / CODES).is_file()):
        raise ConfigError(f"{template.name} shows items as semantic IDs: set model.adapter to an adapter trained "
                          "with them (`llmrec train` with train.sid writes one; `llmrec sid build` makes the codes)")


def adapted(cfg: Config, dataset: Dataset) -> tuple[object, Dataset]:
    """The tokenizer and dataset a ranker reads with `model.adapter`: an adapter trained on semantic
    IDs brings its tokenizer (with the code tokens) and the items' codes."""
    adapter = cfg.model.adapter
    tokenizer = load_tokenizer(cfg.model.name, adapter)
    if adapter and (Path(adapter) / CODES).is_file():
        dataset = with_codes(dataset, SemanticIDs.load(adapter))
    return tokenizer, dataset


def build_ranker(cfg: Config, template: Template, dataset: Dataset, stage: str,
                 backend: Backend | None = None) -> LLMRanker:
    """The ranker for `cfg` on the backend `cfg` names (or on `backend`, which the caller keeps
    and closes), scoring targets of `stage` (the collaborative vectors it reads). The ranker owns
    a backend it built: `ranker.close()` shuts it down. Callers run `check_adapter` first, before
    loading data, so a bad adapter fails at once."""
    owned = backend is None
    backend = backend_from_config(cfg) if owned else backend
    try:
        tokenizer, dataset = adapted(cfg, dataset)
        return LLMRanker(template, backend, tokenizer, dataset, cfg.rank.scoring,
                         cfg.rank.max_prompt_tokens, cfg.rank.seed, stage=stage, owns_backend=owned,
                         trie=cfg.rank.trie, shuffles=cfg.rank.shuffles)
    except BaseException:
        if owned:
            backend.close()
        raise
