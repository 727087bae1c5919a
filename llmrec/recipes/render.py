"""`llmrec prompts render`: the exact prompt a ranking run would build for one user."""

from __future__ import annotations

from llmrec.config import Config
from llmrec.data.prepared import open_prepared
from llmrec.errors import DataError
from llmrec.prompts.render import load_template


def render_for_user(cfg: Config, user_id: str) -> tuple[str, int, int]:
    """(prompt text, token count, history items dropped); yes/no shows the first candidate's prompt."""
    from transformers import AutoConfig

    from llmrec.models.load import load_tokenizer, resolve_model
    from llmrec.scoring.rank import LLMRanker

    template = load_template(cfg.rank.template)
    prepared = open_prepared(cfg, log=lambda *_: None)
    cfg = prepared.cfg
    ds = prepared.dataset(log=lambda *_: None)
    job = prepared.job(ds)
    query = next((q for q in job.queries if q.user_id == user_id), None)
    if query is None:
        raise DataError(f"user {user_id!r} is not in {job.source}")
    model_cfg = AutoConfig.from_pretrained(resolve_model(cfg.model.name))
    slots = None
    if template.uses_cf and cfg.model.adapter:  # collaborative slots come from the adapter's projector files
        from llmrec.models import cf

        if cf.has_cf(cfg.model.adapter):
            slots = cf.load_table(cfg.model.adapter)
    ranker = LLMRanker(template, None, load_tokenizer(cfg.model.name), ds, cfg.rank.scoring,
                       cfg.rank.max_prompt_tokens, cfg.rank.seed,
                       max_length=getattr(model_cfg, "max_position_embeddings", 2048), slots=slots, stage=job.stage)
    (prompt, *_), _ = ranker.build_prompts(query)
    return prompt.text, len(prompt.ids), prompt.dropped
