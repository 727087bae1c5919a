"""The config: frozen dataclass sections loaded from TOML with `key.sub=value` overrides.

One section per component: `[data]`, `[split]`, `[candidates]`, `[model]`, `[rank]` (with
`[rank.ray]`), `[backend.<name>]` (each backend's own settings), `[baseline]` (with
`[baseline.<model>]`), `[train]` (with `[train.lora]` / `[train.prompt_tuning]` and `[train.cf]`),
`[serve]`, `[chat]`. A table of an entry that is not selected (`[backend.vllm]` while
`rank.backend = "hf"`, the tables of several baselines in one file) is checked against that
entry's settings but not used, so one file can hold them all. Unknown keys are errors (a typo must not silently fall back to a default),
a key that moved is an error naming its new place, closed choices are `Literal` types, and every
section validates itself in `__post_init__`, so a bad value fails before any work starts. The
parsing machinery is `llmrec/settings.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from llmrec import registry
from llmrec.errors import ConfigError
from llmrec.settings import (
    MOVED,
    Sections,
    apply_overrides,
    check_choices,
    dump_toml,
    from_dict,
    read_toml,
    sections_field,
    to_dict,
)

__all__ = ["Config", "Sections", "apply_overrides", "dump_toml", "from_dict", "load_config", "to_dict"]

T = TypeVar("T")

CANDIDATE_KINDS = ("sampled", "pop", "window", "bm25", "full")  # "retrieved" files come from `llmrec baseline --retrieve`
STAGES = ("test", "valid")
ScoringMode = Literal["sum", "mean", "calibrated"]  # title style, llmrec/scoring/likelihood.py


def _at_least(section: str, obj: Any, low: float, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        if not value >= low:  # `not >=` also refuses nan
            raise ConfigError(f"{section}.{key}: must be >= {low:g}; got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Where interactions and items come from and how they are filtered."""

    dataset: str = "ml-100k"  # an embedded asset name, or a name for a user dataset
    format: str = "recbole"  # a registered data format: recbole | csv | jsonl | hf | parquet
    path: str = ""  # recbole: folder holding <name>.inter/.item; csv/jsonl: interactions file
    items_path: str = ""  # csv/jsonl/hf: the items file (hf: a dataset folder or hub id)
    hf_split: str = "train"  # hf: the split to read
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
        fmt = registry.FORMATS.entry(self.format)
        missing = [k for k in fmt.capabilities.get("requires", ()) if not getattr(self, k)]
        if missing:
            raise ConfigError(f"data.format {self.format!r} needs {' and '.join('data.' + k for k in missing)}")
        _at_least("data", self, 0, "kcore")


def parse_ratio(ratio: str) -> tuple[float, float, float]:
    """`split.ratio` ("8:1:1" or "0.8:0.1:0.1") as three shares summing to 1, each above 0."""
    try:
        parts = [float(x) for x in str(ratio).split(":")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(p > 0 for p in parts):
        raise ConfigError(f"split.ratio: expected three positive train:valid:test shares such as 8:1:1; got {ratio!r}")
    total = sum(parts)
    return parts[0] / total, parts[1] / total, parts[2] / total


@dataclass(frozen=True)
class SplitConfig:
    """Chronological split. leave-one-out: per user, last item test, second-to-last validation, the
    rest train. ratio: per user, the last items by share (8:1:1) test and validation targets.
    global-time: one cut for everyone; the first new item after it is the test target."""

    method: Literal["leave-one-out", "ratio", "global-time"] = "leave-one-out"
    ratio: str = "8:1:1"  # ratio: train:valid:test shares of each user's items (last ones held out)
    cut: str | float = "0.9"  # global-time: share of the log before the cut (0.9), Unix seconds, or a date (2018-01-01)
    history_len: int = 20  # prompts see at most the last N items (LlamaRec uses 20)
    tie_break: Literal["hash", "file"] = "hash"  # same-timestamp order: seeded hash (not id order) | file order
    seed: int = 0  # seed of the "hash" tie-break (and of the cold items drawn)
    cold_items: float = 0.0  # share of items held out of training entirely (cold start); 0: none

    def __post_init__(self) -> None:
        check_choices(self, "split")
        object.__setattr__(self, "cut", str(self.cut))  # 0.9 and "0.9" are one setting (and one prepared record)
        if not 0 <= self.cold_items < 1:
            raise ConfigError(f"split.cold_items: the share of items held out must be in [0, 1); got {self.cold_items}")
        if self.method == "ratio":
            parse_ratio(self.ratio)
            if self.cold_items:
                raise ConfigError("split.cold_items holds out one test item per user; it does not combine with "
                                  "split.method=ratio")
        _at_least("split", self, 1, "history_len")


@dataclass(frozen=True)
class CandidatesConfig:
    """Which candidate sets to build; every method later scores exactly these lists."""

    kinds: tuple[str, ...] = ("sampled", "pop", "full")
    n: int = 20  # list length (1 positive + n-1 negatives) for sampled/pop
    seed: int = 0
    stages: tuple[str, ...] = ("test", "valid")
    include_target: bool = True  # bm25: false writes the lists as retrieved (the target only when BM25 finds it)

    def __post_init__(self) -> None:
        for kind in self.kinds:
            if kind not in CANDIDATE_KINDS:
                raise ConfigError(f"candidates.kinds: unknown kind {kind!r}; expected some of {list(CANDIDATE_KINDS)}")
        for stage in self.stages:
            if stage not in STAGES:
                raise ConfigError(f"candidates.stages: unknown stage {stage!r}; expected {list(STAGES)}")
        _at_least("candidates", self, 2, "n")


@dataclass(frozen=True)
class ModelConfig:
    """The LM: an embedded asset name, a local folder or a Hugging Face id, plus an optional adapter."""

    name: str = "smollm2-135m-instruct"
    adapter: str = ""  # a peft adapter folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: Literal["auto", "float32", "bfloat16", "float16", "float64"] = "auto"  # auto: bf16 on GPU, fp32 on CPU;
    # float64 serves exactness checks on a CPU

    def __post_init__(self) -> None:
        check_choices(self, "model")
        # Checked here so a typo fails in one line before a model loads, not deep inside torch.
        if not self.name.strip():
            raise ConfigError(f"model.name: must name an embedded model, a local folder or a Hugging Face id; "
                              f"got {self.name!r}")
        index = self.device.removeprefix("cuda:")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not (
                self.device.startswith("cuda:") and index.isascii() and index.isdigit()):
            raise ConfigError(f"model.device: expected auto, cpu, cuda, cuda:N or mps; got {self.device!r}")


@dataclass(frozen=True)
class RayConfig:
    """`rank.engine = "ray"`: the batch job on Ray Data actors (llmrec/recipes/rank_ray.py)."""

    address: str = "auto"  # auto: the running cluster, else a new local one | local | host:port | ray://host:port
    actors: int = 0  # scoring actors (0: one per gpus_per_actor GPUs of the cluster; one per node without)
    gpus_per_actor: float = -1  # GPUs per actor (-1: 1 when the cluster has GPUs, else 0)
    cpus_per_actor: float = 0  # CPUs per actor (0: 1 with GPUs; else a node's CPUs shared by its actors)
    block_users: int = 256  # users per block (one actor call, one part file; what a resume skips or redoes)
    output: Literal["jsonl", "parquet"] = "jsonl"  # ranks.jsonl (merged) | ranks.parquet/ (one file per block)

    def __post_init__(self) -> None:
        check_choices(self, "rank.ray")
        _at_least("rank.ray", self, 0, "actors", "cpus_per_actor")
        _at_least("rank.ray", self, 1, "block_users")
        if self.gpus_per_actor < 0 and self.gpus_per_actor != -1:
            raise ConfigError(f"rank.ray.gpus_per_actor: must be >= 0 (or -1: auto); got {self.gpus_per_actor}")
        if not self.address.strip():
            raise ConfigError("rank.ray.address: expected auto, local, host:port or ray://host:port; got ''")


@dataclass(frozen=True)
class RankConfig:
    """A batch ranking job: which template scores which candidate lists, and how."""

    template: str = "title/next_item_v1"  # shipped name or path to a .j2 file
    backend: str = "hf"  # a registered backend: hf | vllm (its settings: [backend.<name>])
    scoring: ScoringMode = "sum"  # title style
    candidates: str = "sampled-20.test"  # a label under <out_dir>/candidates, or a file path
    input: str = ""  # JSONL or Parquet of {"user_id", "history", "candidates"} instead of prepared candidates
    users: int = 0  # rank only the first N users (0: all)
    max_prompt_tokens: int = 0  # prompt budget; 0: the model's context length
    seed: int = 0  # candidate order inside list prompts
    shuffles: int = 1  # list styles: score N seeded orders of each list and average (position-bias control)
    batch_users: int = 4  # users per backend call
    top_k: int = 0  # candidates written per user (0: all, ranked)
    trie: Literal["auto", "always", "never"] = "auto"  # title style: score a list through its token trie (auto: > 64)
    beam: int = 0  # 0: score every candidate | N: the top rank.top_k by beam search with N beams (title, sid)
    on_unknown: Literal["error", "skip"] = "error"  # unknown item ids: error | skip (drop them, counted)
    run_dir: str = ""  # default: <out_dir>/rank/<template>--<model>--<scoring>--<candidates>
    engine: Literal["local", "ray"] = "local"  # local: this process | ray: Ray Data actors ([rank.ray])
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        check_choices(self, "rank")
        registry.BACKENDS.entry(self.backend)
        _at_least("rank", self, 0, "users", "max_prompt_tokens", "top_k", "beam")
        if self.beam and not self.top_k:
            raise ConfigError(f"rank.beam={self.beam} generates rank.top_k items per user: set rank.top_k (e.g. 10)")
        if self.beam and self.engine == "ray":
            raise ConfigError("rank.beam runs on rank.engine=local (the Ray engine scores given lists only)")
        _at_least("rank", self, 1, "batch_users", "shuffles")
        if self.ray.output == "parquet" and self.engine != "ray":
            raise ConfigError("rank.ray.output=parquet is written by the Ray engine: add rank.engine=ray "
                              "(on one machine it starts a local Ray cluster)")


@dataclass(frozen=True)
class BaselineConfig:
    """Classic, KG and content recommenders fitted on the training split and run on saved candidate
    files. Each model's own settings are its `[baseline.<name>]` table (defaults: the model's own,
    chosen on the validation items)."""

    name: str = "bpr"  # a registered baseline (`llmrec baseline --help` lists them)
    candidates: tuple[str, ...] = ("sampled-20.test",)  # labels under <out_dir>/candidates, or paths
    seed: int = 0  # models with randomness: initialisation, sampling, order
    retrieve: int = 0  # also write candidates/retrieved-<N>.<stage>.jsonl from this model's top N
    retrieve_label: str = ""  # that file's label instead of retrieved-<N> (several retrievers side by side)
    top_k: int = 20  # candidates written per user in ranks.jsonl (the rank uses all of them)
    threads: int = 0  # torch threads for fitting and scoring; 0: the idle cores (cores - 1-min load, >= 1)
    models: Sections = sections_field("BASELINES", flat=True)

    def __post_init__(self) -> None:
        _at_least("baseline", self, 0, "retrieve", "top_k", "threads")
        if self.retrieve_label and not (self.retrieve_label.replace("-", "").replace("_", "").isalnum()
                                        and self.retrieve_label.isascii()):
            raise ConfigError(f"baseline.retrieve_label: letters, digits, - and _ only (it names a file under "
                              f"candidates/); got {self.retrieve_label!r}")
        registry.BASELINES.entry(self.name)

    def settings(self) -> Any:
        """The chosen model's settings: its `[baseline.<name>]` table, or its defaults."""
        return self.models.settings(self.name)

    def resolved(self) -> BaselineConfig:
        """This config with the chosen model's table filled in (what a run records)."""
        return dataclasses.replace(self, models=self.models.with_defaults(self.name))


@dataclass(frozen=True)
class SIDConfig:
    """`[sid]`: semantic IDs (`llmrec sid build`, llmrec/sid/codes.py) from item vectors."""

    vectors: str = "content-st"  # content-st | content-lm | a baseline run directory (vectors.npz); a+b joins
    levels: int = 3  # quantised levels (a last one makes every code unique)
    codebook: int = 64  # codes per quantised level
    seed: int = 0
    name: str = ""  # the folder <out_dir>/sid/<name> (default: from vectors, levels and codebook)

    def __post_init__(self) -> None:
        _at_least("sid", self, 1, "levels", "codebook")
        if self.levels > 8:
            raise ConfigError(f"sid.levels: at most 8; got {self.levels}")
        if self.name and not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"sid.name: letters, digits, - and _ only; got {self.name!r}")


@dataclass(frozen=True)
class CFConfig:
    """`[train.cf]`: collaborative tokens (llmrec/models/cf.py) for `| cf` templates."""

    vectors: str = ""  # a baseline run directory (bpr, mf, als, sasrec) or its vectors.npz
    hidden: int = 0  # projector MLP width; 0: the LM's hidden size
    learning_rate: float = 1e-3  # the projector's learning rate
    unknown_rate: float = 0.05  # share of slots trained as the "unknown" fallback vector
    train: Literal["both", "projector"] = "both"  # projector: the adapter stays as loaded (CoLLM step 2)
    residual: bool = False  # also add alpha x the baseline's score to each answer's score (letters, yesno)
    curriculum: str = ""  # a text-only twin of the template (LLaRA): its prompts give way to the hybrid ones

    def __post_init__(self) -> None:
        check_choices(self, "train.cf")
        _at_least("train.cf", self, 0, "hidden")
        if not self.learning_rate > 0:
            raise ConfigError(f"train.cf.learning_rate: must be > 0; got {self.learning_rate}")
        if not 0 <= self.unknown_rate < 1:
            raise ConfigError(f"train.cf.unknown_rate: must be in [0, 1); got {self.unknown_rate}")


@dataclass(frozen=True)
class TrainConfig:
    """Adapter training: examples from `template`, a peft adapter (its settings: `[train.lora]` or
    `[train.prompt_tuning]`), the accelerate loop."""

    template: str = "letters/candidates_v1"
    adapter: str = "lora"  # a registered adapter kind: lora | prompt-tuning
    prefixes_per_user: int = 1  # training targets per user (latest training items first)
    max_users: int = 0  # 0: all users
    history_len: int = 0  # 0: split.history_len
    epochs: int = 1
    max_steps: int = 0  # optimizer steps; 0: epochs x batches
    batch_size: int = 4
    gradient_accumulation: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    scheduler: Literal["cosine", "linear"] = "cosine"
    eval_every: int = 50  # optimizer steps between validations
    valid_users: int = 50  # users of candidates/<n>.valid scored at each validation
    valid_candidates: str = "sampled-20.valid"
    patience: int = 3  # validations without NDCG@10 gain before stopping
    seed: int = 0
    out: str = ""  # default: <out_dir>/adapters/<adapter>--<template>
    merge: bool = False  # also export merged full weights (LoRA)
    targets: Literal["auto", "train", "valid"] = "auto"  # auto: valid for `| cf` templates, else train
    draws: int = 1  # examples per target (letters, yesno): each with its own sampled negatives and order
    init_adapter: str = ""  # start from this trained adapter folder (e.g. a text-only LoRA, CoLLM step 1)
    sid: str = ""  # semantic IDs folder (`llmrec sid build`): its code tokens are added and trained (sid templates)
    gradient_checkpointing: bool = False  # recompute each layer's activations in the backward pass (less memory)
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = "auto"  # auto: bf16 on a CUDA GPU, none on a CPU
    quantization: Literal["none", "4bit", "8bit"] = "none"  # base weights through bitsandbytes (QLoRA); CUDA only
    batches: Literal["padded", "grouped", "packed"] = "padded"  # grouped: similar lengths batched; packed: rows of several examples
    cf: CFConfig = field(default_factory=CFConfig)
    adapters: Sections = sections_field("ADAPTERS", flat=True)

    def __post_init__(self) -> None:
        check_choices(self, "train")
        registry.ADAPTERS.entry(self.adapter)
        object.__setattr__(self, "adapters", self.adapters.with_defaults(self.adapter))
        if self.cf.train == "projector" and not self.init_adapter:
            raise ConfigError("train.cf.train=projector keeps the adapter as loaded: set train.init_adapter to a "
                              "trained adapter folder (e.g. a text-only LoRA)")
        _at_least("train", self, 1, "batch_size", "gradient_accumulation", "eval_every", "epochs",
                  "prefixes_per_user", "patience", "draws")
        _at_least("train", self, 0, "max_steps", "valid_users", "max_users", "history_len")
        if not self.learning_rate > 0:
            raise ConfigError(f"train.learning_rate: must be > 0; got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"train.warmup_ratio: must be in [0, 1); got {self.warmup_ratio}")
        if self.batches == "packed" and self.adapter != "lora":
            raise ConfigError(f"train.batches=packed: rows of several examples need every position to be an "
                              f"example's; train.adapter={self.adapter!r} prepends virtual tokens to a row (use lora)")
        if self.batches == "packed" and self.cf.vectors and self.cf.residual:
            raise ConfigError("train.batches=packed needs the token loss; train.cf.residual's choice loss reads one "
                              "example per row (use train.batches=grouped)")
        if self.quantization != "none" and self.adapter != "lora":
            raise ConfigError(f"train.quantization={self.quantization} trains LoRA on frozen quantised weights "
                              f"(QLoRA); train.adapter={self.adapter!r} is not supported with it")

    @property
    def adapter_settings(self) -> Any:
        """The settings of `train.adapter` (its `[train.<kind>]` table, or its defaults)."""
        return self.adapters.settings(self.adapter)


@dataclass(frozen=True)
class ServeConfig:
    """`llmrec serve`: the HTTP ranking service (llmrec/serve). Ranking settings come from `[rank]`."""

    host: str = "127.0.0.1"  # loopback by default: expose it deliberately (0.0.0.0) behind a proxy
    port: int = 8000
    allowed_hosts: tuple[str, ...] = ()  # Host header names accepted besides the bound address (DNS rebinding guard)
    api_docs: bool = False  # serve the interactive API docs (/docs, /redoc, /openapi.json)
    max_batch: int = 8  # queued queries scored in one ranker call
    max_wait_ms: float = 5.0  # how long a batch waits for more queries once it has one
    max_queue: int = 256  # queries waiting beyond this are refused with 503
    max_candidates: int = 100  # per request (/v1/rank candidates, /v1/recommend serve.retrieve)
    max_history: int = 500  # history items a request may send (the prompt sees the last split.history_len)
    max_body_bytes: int = 1_000_000  # larger request bodies are refused with 413
    retriever: str = "pop"  # /v1/recommend candidates: pop (training counts) | a baseline run dir with vectors.npz
    #                        | generate (the LLM generates them: beam search over the catalogue, title/sid templates)
    beams: int = 20  # the generate retriever's beam width
    retrieve: int = 20  # candidates the retriever hands to the LLM ranker; k <= retrieve

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"serve.port: must be in [0, 65535]; got {self.port}")
        _at_least("serve", self, 1, "max_batch", "max_queue", "max_candidates", "max_history", "max_body_bytes",
                  "retrieve", "beams")
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

    # rules: the request read by rules (genres, decades, years, titles); lm: the understanding template under its
    # grammar, rules when it does not parse. rules by default: SmolLM2-135M's parsed readings are poor (docs/chat.md)
    understand: Literal["lm", "rules"] = "rules"
    understand_template: str = "chat/understand_v2"  # v1: with a worked example (for decoding without the grammar)
    understand_max_new_tokens: int = 48
    understand_grammar: bool = True  # lm: decode the answer under its grammar, so it always parses (chat/grammar.py)
    reply: Literal["lm", "facts"] = "lm"  # lm: a generated reason per item | facts: genres, year and likes only
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
        check_choices(self, "chat")
        _at_least("chat", self, 1, "understand_max_new_tokens", "max_new_tokens", "k", "retrieve", "max_text")
        if self.max_new_tokens > 256 or self.understand_max_new_tokens > 256:
            raise ConfigError("chat.max_new_tokens and chat.understand_max_new_tokens: at most 256 (replies stay short)")
        if self.k > self.retrieve:
            raise ConfigError(f"chat.k ({self.k}) must be <= chat.retrieve ({self.retrieve})")
        if not 0 < self.temperature <= 5 or not 0 < self.top_p <= 1:
            raise ConfigError(f"chat.temperature must be in (0, 5] and chat.top_p in (0, 1]; got {self.temperature}, "
                              f"{self.top_p}")
        _at_least("chat", self, 0, "cf_weight", "like_weight")


@dataclass(frozen=True)
class Config:
    """The whole job. `out_dir` holds split, candidates and stats written by `llmrec prepare`."""

    out_dir: str = "runs/ml-100k"
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    backend: Sections = sections_field("BACKENDS")
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    sid: SIDConfig = field(default_factory=SIDConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", self.backend.with_defaults(self.rank.backend))

    @property
    def backend_settings(self) -> Any:
        """The settings of `rank.backend` (its `[backend.<name>]` table, or its defaults)."""
        return self.backend.settings(self.rank.backend)


_LORA = "train.lora.{}"
MOVED.update({
    "rank.shards": "data-parallel ranking runs on Ray: rank.engine=ray rank.ray.actors=N",
    "rank.shard": "data-parallel ranking runs on Ray: rank.engine=ray rank.ray.actors=N",
    "rank.batch_tokens": "backend.hf.batch_tokens", "rank.shared_prefix": "backend.hf.shared_prefix",
    "vllm": "backend.vllm.{sub} (the [vllm] table is now [backend.vllm])",
    "rank.ray_address": "rank.ray.address",
    **{f"rank.{k}": f"rank.ray.{k}" for k in ("actors", "gpus_per_actor", "cpus_per_actor", "block_users", "output")},
    **{f"baseline.{k}": f"baseline.{{name}}.{k} (each model's settings are its own [baseline.<name>] table)"
       for k in ("embedding_size", "epochs", "learning_rate", "weight_decay", "batch_size", "patience", "neighbours",
                 "shrink", "alpha", "negatives", "layers", "heads", "dropout", "max_len", "interest", "pooling", "kg")},
    **{f"train.lora_{k}": _LORA.format(k) for k in ("rank", "alpha", "dropout", "target_modules")},
    "train.num_virtual_tokens": "train.prompt_tuning.num_virtual_tokens",
    "train.prompt_init_text": "train.prompt_tuning.init_text",
    **{f"train.cf_{k}": f"train.cf.{k}" for k in ("vectors", "hidden", "learning_rate", "unknown_rate", "train",
                                                  "residual")},
    "train.curriculum": "train.cf.curriculum",
})


def load_config(path: str | Path | None, overrides: list[str] | None = None, cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load a TOML config and apply overrides.

    Without `path` a full Config starts from the shipped default, `scripts/configs/ml100k.toml`
    (package data `llmrec.configs`), so `llmrec prepare` and `llmrec prepare -c` on that file agree
    even if the file and the dataclass defaults drift apart; a single section starts from its defaults.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(Path(path))
    elif cls is Config:
        import importlib.resources

        try:
            default = importlib.resources.files("llmrec.configs") / "ml100k.toml"
        except ModuleNotFoundError:  # an editable install older than the package data: plain defaults
            default = None
        if default is not None:
            data = read_toml(Path(str(default)))
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data)
