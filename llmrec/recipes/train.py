"""`llmrec train`: build examples from a template, attach a LoRA or prompt-tuning adapter, train.

Writes `<train.out>/best/` (peft adapter folder with the best validation NDCG@10), `llmrec.toml`
(the resolved config) and `template.json` (template name and sha256) beside it, the learning
curve in `train_state.json`, a resumable `checkpoint/`, and with `train.merge` a merged model.
Rerunning on an existing `train.out` resumes its checkpoint only under the same settings.

A `| cf` template trains collaborative tokens too: the projector of `train.cf.vectors` (a baseline
run) is attached to the model, trained with the adapter at `train.cf.learning_rate` (or alone,
`train.cf.train=projector` on a `train.init_adapter`, CoLLM's second step), and saved in `best/`
beside the adapter. Its examples target the validation items (`train.targets=auto`), and the users
scored for validation NDCG@10 are then held out of training. `train.cf.curriculum` names a text-only
twin of the template (LLaRA's curriculum): each training example is drawn from the twin's prompt
at first and from the hybrid one more and more often, all hybrid by the last step.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from llmrec.config import Config, TrainConfig, dump_toml, to_dict
from llmrec.data.prepared import open_prepared
from llmrec.data.split import Split
from llmrec.errors import ConfigError
from llmrec.prompts.render import load_template
from llmrec.prompts.style import prompt_budget
from llmrec.registry import STYLES


@dataclass
class TrainResult:
    adapter_dir: Path
    best_ndcg: float
    best_step: int
    curve: list[dict]
    seconds: float
    examples: int


def default_out(cfg: Config) -> Path:
    if cfg.train.out:
        return Path(cfg.train.out)
    return Path(cfg.out_dir) / "adapters" / f"{cfg.train.adapter}--{cfg.train.template.replace('/', '-')}"


LATER_KEYS = ("mixed_precision", "quantization", "batches")  # [train] keys added after checkpoints were first written


def checkpoint_settings(cfg: Config, template, split: Split, split_path: Path) -> dict:
    """What shapes a checkpoint's weights, so a resume under other settings can be refused.

    All of `[train]` except `out` (where the run is saved) and `merge` (an export after training),
    plus the model, the template text, the dataset and split, and the other settings the examples
    depend on (`candidates.n`, `split.history_len`).
    """
    import hashlib

    from llmrec.assets import sha256_file
    from llmrec.models import cf
    from llmrec.models.adapters import adapter_sha256

    defaults = to_dict(TrainConfig())
    train = {f"train.{k}": v for k, v in to_dict(cfg.train).items()
             if k not in ("out", "merge", "gradient_checkpointing")  # where it is saved; exports; the same math
             and not (k in LATER_KEYS and v == defaults[k])}  # at their defaults: as checkpoints written before them
    extra = {}
    if cfg.train.cf.vectors:
        extra["cf.vectors_sha256"] = sha256_file(cf.vectors_path(cfg.train.cf.vectors))
    if cfg.train.init_adapter:
        extra["init_adapter.sha256"] = adapter_sha256(cfg.train.init_adapter)
    if cfg.train.cf.curriculum:
        extra["curriculum.sha256"] = load_template(cfg.train.cf.curriculum).sha256
    if cfg.train.sid:
        from llmrec.sid.codes import SemanticIDs

        extra["sid.sha256"] = SemanticIDs.load(cfg.train.sid).sha256
    return {**train, **extra, "model.name": cfg.model.name, "template.sha256": template.sha256,
            "data.hash": split.dataset_hash, "split.sha256": hashlib.sha256(split_path.read_bytes()).hexdigest(),
            "candidates.n": cfg.candidates.n, "split.history_len": cfg.split.history_len}


def training_prompt_budget(cfg: Config, model_path: str) -> int:
    """The prompt budget ranking will use with this adapter (the model's context less any virtual
    tokens, capped by `rank.max_prompt_tokens`), so a long history is cut the same way in both."""
    from transformers import AutoConfig

    from llmrec.models.adapters import virtual_tokens

    context = int(getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", 2048))
    return prompt_budget(cfg.rank.max_prompt_tokens, context - virtual_tokens(cfg.train))


def resolved_targets(cfg: Config, template) -> str:
    """`train.targets`: auto is the validation items for `| cf` templates, the training items otherwise."""
    if cfg.train.targets != "auto":
        return cfg.train.targets
    return "valid" if template.uses_cf else "train"


def check_settings(cfg: Config, template) -> None:
    """Collaborative-token and semantic-ID settings must match the template before anything loads."""
    from llmrec.models import cf

    t, c = cfg.train, cfg.train.cf
    choices = STYLES.entry(template.style).capabilities.get("choices", False)
    if c.residual and not c.vectors:
        raise ConfigError("train.cf.residual adds a baseline's scores: set train.cf.vectors to its run directory")
    if c.residual and not choices:
        raise ConfigError(f"train.cf.residual needs answer choices (letters or yesno style); {template.name} is "
                          f"{template.style} style")
    if template.uses_cf and not c.vectors:
        raise ConfigError(f"{template.name} places collaborative vectors (| cf): set train.cf.vectors to a baseline "
                          "run directory, e.g. train.cf.vectors=runs/ml-100k/baselines/sasrec--sampled-20.test")
    if c.vectors and not template.uses_cf and not c.residual:
        raise ConfigError(f"train.cf.vectors is set but {template.name} has no | cf slot; use a cf template "
                          "(e.g. letters/candidates_cf_v1), set train.cf.residual, or drop train.cf.vectors")
    if c.vectors and not cf.vectors_path(c.vectors).is_file():
        raise ConfigError(f"train.cf.vectors: {cf.vectors_path(c.vectors)} not found; `llmrec baseline` writes "
                          "vectors.npz into the run directories of bpr, mf, als and sasrec")
    if c.vectors and t.merge:
        raise ConfigError("train.merge cannot fold the collaborative-token projector into the weights; leave it off")
    if c.train == "projector" and not template.uses_cf:
        raise ConfigError("train.cf.train=projector trains the projector of a | cf template only")
    needs_sid = STYLES.entry(template.style).capabilities.get("needs_sid", False)
    if needs_sid and not t.sid:
        raise ConfigError(f"{template.name} shows items as semantic IDs: set train.sid to a folder `llmrec sid build` "
                          "wrote, e.g. train.sid=runs/ml-100k/sid/content-st-3x64")
    if t.sid and not needs_sid:
        raise ConfigError(f"train.sid is set but {template.name} shows no codes; use a sid template (sid/next_item_v1)")
    if t.sid and t.init_adapter:
        raise ConfigError("train.sid starts a new adapter with new token rows; it cannot start from train.init_adapter")
    if c.curriculum:
        twin = load_template(c.curriculum)
        if not template.uses_cf or twin.uses_cf or twin.style != template.style:
            raise ConfigError(f"train.cf.curriculum={twin.name} ({twin.style} style) must be a text-only twin of the "
                              f"| cf template being trained ({template.name}, {template.style} style), e.g. "
                              "letters/candidates_v1 for letters/candidates_cf_v1")


def cached_examples(cfg: Config, template, tokenizer, ds, split: Split, history_len: int, max_tokens: int,
                    log=print, slots=None, held_users: set[str] | None = None):
    """(train, valid-loss) `datasets.Dataset`s, tokenised once and cached on disk by their inputs.

    The validation-loss examples are those of the last 5% of the users that have examples (at
    least one user), or of `held_users`, so the validation loss is measured on users the adapter
    never trains on.
    """
    import hashlib

    import datasets
    from llmrec.sid.codes import SemanticIDs
    from llmrec.train.examples import build_examples, to_hf_dataset

    t = cfg.train
    targets = resolved_targets(cfg, template)
    residual = slots is not None and slots.residual
    key = json.dumps([template.sha256, getattr(tokenizer, "name_or_path", ""), len(tokenizer), split.dataset_hash,
                      history_len, cfg.candidates.n, t.prefixes_per_user, t.max_users, t.seed, max_tokens]
                     + ([targets, t.draws, sorted(held_users or [])] if targets != "train" or t.draws > 1 or held_users
                        else [])
                     + ([slots.source_sha256, slots.placeholder_id] if slots is not None else [])
                     + (["residual", slots.stage] if residual else [])
                     + (["curriculum", load_template(t.cf.curriculum).sha256] if t.cf.curriculum else [])
                     + (["sid", SemanticIDs.load(t.sid).sha256] if t.sid else []))
    cache = Path(cfg.out_dir) / "examples" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (cache / "train").is_dir() and (cache / "valid").is_dir():
        log(f"training examples from cache {cache}")
        return datasets.load_from_disk(str(cache / "train")), datasets.load_from_disk(str(cache / "valid"))
    examples = build_examples(template, tokenizer, ds, split, history_len=history_len, n=cfg.candidates.n,
                              prefixes_per_user=t.prefixes_per_user, max_users=t.max_users, max_tokens=max_tokens,
                              seed=t.seed, targets=targets, draws=t.draws, slots=slots)
    if not examples:
        raise ConfigError(f"no training examples for {template.name}: every user has fewer than 2 training items")
    twins = None
    if t.cf.curriculum:  # the same targets, negatives and order (same seed), without the vectors
        twins = build_examples(load_template(t.cf.curriculum), tokenizer, ds, split, history_len=history_len,
                               n=cfg.candidates.n, prefixes_per_user=t.prefixes_per_user, max_users=t.max_users,
                               max_tokens=max_tokens, seed=t.seed, targets=targets, draws=t.draws)
        if [(e.user_id, e.shown, e.choices, e.choice) for e in twins] != [(e.user_id, e.shown, e.choices, e.choice)
                                                                    for e in examples]:
            raise ConfigError(f"train.cf.curriculum={t.cf.curriculum}: its examples do not pair with {template.name}'s "
                              "(a different candidate count or answer?)")
    users = list(dict.fromkeys(e.user_id for e in examples))
    held = held_users or set(users[len(users) - max(1, len(users) // 20):])
    def dataset(rows, text=None):
        if not residual:
            return to_hf_dataset(rows, text=text)
        # the residual's offsets: the baseline's score of each answer choice (No: none)
        offsets = [list(slots.z(e.user_id, list(e.shown))) if len(e.choices) == len(e.shown)
                   else [float(slots.z(e.user_id, [e.shown[0]])[0]), 0.0] for e in rows]  # yes/no: (Yes, No)
        return to_hf_dataset(rows, offsets, text=text)

    keep = [k for k, e in enumerate(examples) if e.user_id not in held]
    train_ds = dataset([examples[k] for k in keep], [twins[k] for k in keep] if twins else None)
    valid_ds = dataset([e for e in examples if e.user_id in held][:64])
    train_ds.save_to_disk(str(cache / "train"))
    valid_ds.save_to_disk(str(cache / "valid"))
    (cache / "key.json").write_text(key)
    return train_ds, valid_ds


def added_tokens(base, tokenizer, sid: str) -> list[int]:
    """Semantic IDs (`train.sid`): their code tokens added to the tokenizer and, where the embedding
    has no room for them, to the model (rows drawn around the existing ones); their ids, whose rows
    the adapter trains (peft's trainable tokens, tied output rows included)."""
    if not sid:
        return []
    from llmrec.sid.codes import SemanticIDs

    codes = SemanticIDs.load(sid).tokens()
    tokenizer.add_tokens(codes)
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(codes)


def memory_savers(base, t: TrainConfig) -> None:
    """Gradient checkpointing (each layer's activations recomputed in the backward pass instead of
    kept) and, for quantised weights, peft's k-bit preparation (norms in fp32, input gradients)."""
    if t.quantization != "none":
        from peft import prepare_model_for_kbit_training

        prepare_model_for_kbit_training(base, use_gradient_checkpointing=t.gradient_checkpointing,
                                        gradient_checkpointing_kwargs={"use_reentrant": False})
    elif t.gradient_checkpointing:
        kwargs = {"use_reentrant": False}  # no need for input gradients; works with frozen embeddings
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if t.gradient_checkpointing:
        base.config.use_cache = False  # a cache is of no use in training and conflicts with recomputation


def load_adapted(cfg: Config, tokenizer, path: str, targets: str, log=print):
    """The model to train: base weights in fp32 on the CPU (moved to the device by the caller),
    a fresh peft adapter (seeded) or `train.init_adapter`, and the collaborative projector of
    `train.cf.vectors` (started from the init adapter's when it fits). Returns (model, slots)."""
    import torch
    from peft import get_peft_model
    from transformers import set_seed

    from llmrec.models.adapters import make_peft_config
    from llmrec.models.load import load_model

    t = cfg.train
    # QLoRA: the frozen base quantised on the GPU, computing in bf16; otherwise fp32 weights on the CPU
    # (moved by the caller) and mixed precision, if any, by autocast
    where, dtype = ("auto", torch.bfloat16) if t.quantization != "none" else ("cpu", torch.float32)
    if t.init_adapter:
        set_seed(t.seed)  # seeded before peft builds (and then loads) the adapter's layers
        model = load_model(cfg.model.name, t.init_adapter, device=where, dtype=dtype, quantization=t.quantization,
                           trainable=t.cf.train == "both", collaborative=False)
        memory_savers(model.get_base_model(), t)
    else:
        base = load_model(cfg.model.name, device=where, dtype=dtype, quantization=t.quantization)
        memory_savers(base, t)
        set_seed(t.seed)  # the adapter's random init: the same command gives the same adapter
        new = added_tokens(base, tokenizer, t.sid)
        model = get_peft_model(base, make_peft_config(t, tokenizer_path=str(path), trainable_tokens=new))
    if not t.cf.vectors:
        return model, None
    from llmrec.models import cf

    embedding = model.get_input_embeddings()
    slots = cf.attach(model, cf.build_table(t.cf.vectors, embedding.num_embeddings, embedding.embedding_dim,
                                            tokenizer, t.cf.hidden, t.cf.unknown_rate, t.cf.residual))
    slots.set_stage("valid" if targets == "valid" else "test")
    if t.init_adapter and cf.has_cf(t.init_adapter):  # e.g. CoLLM step 1's learned residual weight
        init = cf.load_table(t.init_adapter)
        if (init.source_sha256, init.proj_hidden, init.residual) == (slots.source_sha256, slots.proj_hidden,
                                                                      slots.residual):
            slots.projector.load_state_dict(init.projector.state_dict())
            log(f"projector and residual weight start from {t.init_adapter}")
        else:
            log(f"{t.init_adapter} has a projector over other vectors or width: the projector starts fresh")
    log(f"collaborative tokens: {slots.model_name} vectors from {slots.source} ({len(slots.user_index)} users, "
        f"{len(slots.item_index)} items, {slots.d_in} -> {slots.proj_hidden} -> {slots.hidden_size})")
    return model, slots


def validator(cfg: Config, template, tokenizer, ds, queries: list, positives: dict, stage: str):
    """Mean NDCG@10 of the validation item(s) on the validation candidate lists, ranked by the very
    scorer `llmrec rank` uses, on the model being trained. Under data parallelism each process
    scores its own share of the users (every user exactly once) and the sums are added up."""
    import torch
    from accelerate import PartialState

    from llmrec.backends.hf import HFBackend
    from llmrec.eval.metrics import expected_rank, user_metrics
    from llmrec.scoring.rank import LLMRanker
    from llmrec.train import finetune

    def validate(m) -> float:
        was_training = m.training
        backend = HFBackend(model_obj=m, device=str(next(m.parameters()).device))
        ranker = LLMRanker(template, backend, tokenizer, ds, cfg.rank.scoring, cfg.rank.max_prompt_tokens,
                           cfg.rank.seed, stage=stage)
        state = PartialState()
        # replicated weights: each process scores its share; sharded ones (FSDP, ZeRO-3) forward in lockstep
        split = state.num_processes > 1 and not finetune.sharded_weights()
        mine = queries[state.process_index::state.num_processes] if split else queries
        total = 0.0
        for k in range(0, len(mine), 4):
            for s in ranker.score(mine[k:k + 4]):
                ranks = [expected_rank(s.scores, s.candidates.index(p)) for p in positives[s.user_id]]
                total += user_metrics(ranks)["NDCG@10"]
        m.train(was_training)
        sums = torch.tensor([total, len(mine)], dtype=torch.float64, device=state.device)
        if split:
            torch.distributed.all_reduce(sums)
        validate.scored = int(sums[1])  # users scored, over all processes (recorded in the curve)
        return float(sums[0] / max(float(sums[1]), 1.0))

    validate.scored = 0
    return validate


def launch_checks(cfg: Config):
    """This process's place in the launch (one of several under `accelerate launch` / torchrun), after
    the settings this machine cannot run are refused in one line, before any model loads."""
    from llmrec.models.load import quantization_config
    from llmrec.train import finetune

    procs = finetune.process_state()
    finetune.precision(cfg.train.mixed_precision)
    quantization_config(cfg.train.quantization)
    finetune.check_global_batch(cfg.train.batch_size, procs.num_processes)
    return procs


def run(cfg: Config, log=print) -> TrainResult:
    from llmrec.models.load import load_tokenizer, pick_device, resolve_model
    from llmrec.scoring.rank import UserQuery
    from llmrec.train import finetune

    template = load_template(cfg.train.template)
    check_settings(cfg, template)
    procs = launch_checks(cfg)
    if not procs.is_main_process:
        log = finetune.quiet  # one process reports
    prepared = open_prepared(cfg, log)
    cfg, t = prepared.cfg, prepared.cfg.train
    out = default_out(cfg)
    split = prepared.split()
    settings = checkpoint_settings(cfg, template, split, prepared.out_dir / "split.jsonl")
    finetune.check_resumable(out, settings)  # before the files below would record settings a resume ignores
    out.mkdir(parents=True, exist_ok=True)
    (out / "llmrec.toml").write_text(dump_toml(cfg))
    (out / "template.json").write_text(json.dumps({"template": template.name, "sha256": template.sha256}))
    log(f"train: {t.adapter} on {cfg.model.name} for {template.name} -> {out}")

    ds = prepared.dataset(log)
    tokenizer = load_tokenizer(cfg.model.name)
    if t.sid:  # items carry their codes; the tokenizer, codes and statistics travel with the adapter
        from llmrec.sid.codes import SemanticIDs, with_codes

        ds = with_codes(ds, SemanticIDs.load(t.sid))
        SemanticIDs.load(t.sid).save(out)
    history_len = t.history_len or cfg.split.history_len
    path = resolve_model(cfg.model.name)
    max_tokens = training_prompt_budget(cfg, path)
    targets = resolved_targets(cfg, template)
    model, slots = load_adapted(cfg, tokenizer, path, targets, log)
    if t.quantization == "none":  # quantised weights were loaded onto the GPU and stay there
        model = model.to(pick_device(cfg.model.device))
    if t.sid:
        tokenizer.save_pretrained(out)

    _, vcands = prepared.candidates(t.valid_candidates)
    queries = [UserQuery(c.user_id, split[c.user_id].events(ds, vcands.stage, history_len), list(c.candidates))
               for c in vcands.lists[: t.valid_users]]
    positives = {c.user_id: c.positives for c in vcands.lists}  # several on a ratio split (full.valid)
    held = {q.user_id for q in queries} if targets == "valid" else None  # never train on a validation target

    with procs.main_process_first():  # under `accelerate launch`, one process builds the cache
        train_ds, valid_ds = cached_examples(cfg, template, tokenizer, ds, split, history_len, max_tokens, log,
                                             slots, held)
    log(f"{len(train_ds)} training examples, {len(valid_ds)} for the validation loss ({template.name}, "
        f"{targets} targets)")
    validate = validator(cfg, template, tokenizer, ds, queries, positives, "valid" if targets == "valid" else "test")
    groups = None
    if slots is not None:
        projector = list(slots.parameters())
        others = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in projector)]
        groups = [{"params": others, "lr": t.learning_rate}] if others else []
        groups.append({"params": projector, "lr": t.cf.learning_rate})
    started = time.time()
    loss_fn = finetune.choice_loss(slots.projector.alpha) if slots is not None and slots.residual else finetune.lm_loss
    state = finetune.train(
        model, train_ds, valid_ds, out=out, pad_id=tokenizer.pad_token_id or 0, batch_size=t.batch_size,
        gradient_accumulation=t.gradient_accumulation, learning_rate=t.learning_rate, epochs=t.epochs,
        max_steps=t.max_steps, warmup_ratio=t.warmup_ratio, scheduler=t.scheduler, eval_every=t.eval_every,
        patience=t.patience, seed=t.seed, validate=validate, log=log, settings=settings, param_groups=groups,
        curriculum=bool(t.cf.curriculum), mixed_precision=t.mixed_precision, loss_fn=loss_fn, batches=t.batches)
    seconds = time.time() - started
    best = out / "best"
    if t.merge and t.adapter == "lora":
        merge(cfg, best, out, tokenizer, log)
    elif t.merge:
        log("train.merge: only LoRA adapters merge into the weights; prompt-tuning keeps its adapter folder")
    log(f"best validation NDCG@10 {state.best_ndcg:.4f} at step {state.best_step}; adapter: {best}")
    return TrainResult(best, state.best_ndcg, state.best_step, state.curve, seconds, len(train_ds))


def merge(cfg: Config, best: Path, out: Path, tokenizer, log=print) -> None:
    """The best LoRA folded into the base weights: a plain transformers folder (`train.merge`)."""
    import torch

    from llmrec.models.load import load_model

    merged = load_model(cfg.model.name, str(best), device="cpu", dtype=torch.float32,
                        collaborative=False).merge_and_unload()
    merged.save_pretrained(out / "merged")
    tokenizer.save_pretrained(out / "merged")
    log(f"merged model: {out / 'merged'}")

