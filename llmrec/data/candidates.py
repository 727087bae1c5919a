"""Candidate sets: the exact lists every method (LLM or classic) scores.

Kinds: `sampled-N` (positive + N-1 unseen items drawn uniformly), `pop-N` (negatives
drawn in proportion to training popularity, the harder protocol of Krichene & Rendle 2020's
critique of sampled metrics, BERT4Rec's), `window-N` (uniform over every item except the target and
the prompt's history window, so items the user saw earlier can be negatives: LLaRA's protocol),
`bm25-N` (the unseen items whose text best matches the history's text by BM25: hard, text-alike
negatives, RecBole 3.0's BM25 candidates) and `full` (every unseen item). Files carry their seed
and the dataset fingerprint so a method can never score lists built from other data.

`candidates.include_target = false` writes bm25 lists as retrieved (`bm25-N-notarget`): the target
is in a list only when BM25 found it, and is recorded as `missed` otherwise (the "ground truth
absent" setting); every other kind always includes it.

On a cold-start split (`split.cold_items`) negatives are warm items only, so a cold item is only
ever a held-out positive, and `subset` writes the test users whose target is cold
(`sampled-20-cold.test`) and those whose target is warm (`sampled-20-warm.test`) beside the
file of all users: the same lists, split by the target.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.split import Split, natural_key, train_item_counts
from llmrec.errors import ConfigError, DataError


@dataclass(frozen=True)
class CandidateList:
    user_id: str
    positive: str | None  # None for production ranking jobs with no known target
    candidates: tuple[str, ...]
    missed: str | None = None  # retrieved lists: the held-out item the retriever did not find
    more: tuple[str, ...] = ()  # ratio split: the user's other held-out items (ranked with `positive`)

    @property
    def positives(self) -> tuple[str, ...]:
        return () if self.positive is None else (self.positive, *self.more)


@dataclass
class CandidateSet:
    kind: str  # sampled | pop | full | retrieved
    n: int | None  # list length for sampled/pop; None for full
    seed: int
    stage: str  # test | valid
    dataset_hash: str
    lists: list[CandidateList] = field(default_factory=list)
    subset: str = ""  # cold | warm: the users whose target is a cold (held-out) or a warm item; "": all
    filled: int = 0  # bm25: negatives drawn uniformly because too few items matched the history's text

    @property
    def label(self) -> str:
        base = "full" if self.kind == "full" else f"{self.kind}-{self.n}"
        return f"{base}-{self.subset}" if self.subset else base

    @property
    def filename(self) -> str:
        return f"{self.label}.{self.stage}.jsonl"

    def meta(self) -> dict[str, Any]:
        meta = {"kind": self.kind, "n": self.n, "seed": self.seed, "stage": self.stage,
                "dataset_hash": self.dataset_hash, "users": len(self.lists)}
        if self.kind == "bm25":
            meta["filled"] = self.filled
        return {**meta, "subset": self.subset} if self.subset else meta

    def by_user(self) -> dict[str, CandidateList]:
        return {c.user_id: c for c in self.lists}

    def save(self, path: Path) -> None:
        """Write atomically (tmp file + rename) so an interrupted prepare never leaves half a file."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"meta": self.meta()}) + "\n")
            for c in self.lists:
                rec = {"user_id": c.user_id, "positive": c.positive, "candidates": list(c.candidates)}
                if c.missed is not None:
                    rec["missed"] = c.missed
                if c.more:
                    rec["more_positives"] = list(c.more)
                f.write(json.dumps(rec) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> CandidateSet:
        """Read and validate a candidate file; errors name the file and line."""
        if not path.is_file():
            raise DataError(f"candidate file not found: {path} (run `llmrec prepare`)")
        with open(path) as f:
            try:
                meta = json.loads(f.readline())["meta"]
                cs = cls(meta["kind"], meta["n"], meta["seed"], meta["stage"], meta["dataset_hash"],
                         subset=meta.get("subset", ""))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}:1: expected a {{\"meta\": ...}} header line ({e})") from None
            seen: set[str] = set()
            for n, line in enumerate(f, 2):
                c = parse_list(line, f"{path}:{n}")
                if c.user_id in seen:
                    raise DataError(f"{path}:{n}: user {c.user_id!r} appears twice")
                seen.add(c.user_id)
                cs.lists.append(c)
        return cs

    def check_dataset(self, dataset_hash: str, path: Path | str = "") -> None:
        if self.dataset_hash != dataset_hash:
            raise DataError(f"candidate file {path or self.filename} was built on dataset {self.dataset_hash}, "
                            f"but the loaded data is {dataset_hash}; re-run `llmrec prepare`")


def parse_list(line: str, where: str) -> CandidateList:
    """One user's line of a candidate file, checked; `where` (file:line) names it in errors."""
    try:
        r = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed record ({e})") from None
    return list_record(r, where)


def list_record(r: Any, where: str) -> CandidateList:
    """A parsed candidate-file record, checked (candidates unique, the positive among them)."""
    try:
        c = CandidateList(str(r["user_id"]), r["positive"], tuple(str(x) for x in r["candidates"]), r.get("missed"),
                          tuple(str(x) for x in r.get("more_positives", ())))
    except (KeyError, TypeError) as e:
        raise DataError(f"{where}: malformed record ({e!r})") from None
    if len(set(c.candidates)) != len(c.candidates):
        raise DataError(f"{where}: user {c.user_id!r} has duplicate candidates")
    if c.more and (c.positive is None or len(set(c.positives)) != len(c.positives)):
        raise DataError(f"{where}: user {c.user_id!r}: \"more_positives\" needs a \"positive\" and distinct items")
    for p in c.positives:
        if p not in c.candidates:
            raise DataError(f"{where}: positive {p!r} is not among the candidates")
    return c


def read_meta(path: Path) -> dict[str, Any]:
    """A candidate file's header line (kind, n, seed, stage, dataset hash) without reading the lists."""
    if not path.is_file():
        raise DataError(f"candidate file not found: {path} (run `llmrec prepare`)")
    with open(path) as f:
        try:
            meta = json.loads(f.readline())["meta"]
            _ = meta["stage"], meta["dataset_hash"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}:1: expected a {{\"meta\": ...}} header line ({e})") from None
    return meta


def candidate_path(out_dir: str | Path, label: str) -> Path:
    """The one rule from a candidate label to its file: a `.jsonl` path or an existing file is taken
    as it is; anything else (`sampled-20.test`, `retrieved-20.test`) names a file under
    `<out_dir>/candidates/`."""
    p = Path(label)
    return p if p.suffix == ".jsonl" or p.is_file() else Path(out_dir) / "candidates" / f"{label}.jsonl"


def _rng(seed: int, kind: str, stage: str) -> np.random.Generator:
    """Independent stream per (seed, kind, stage) so adding a kind does not change the others."""
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), zlib.crc32(stage.encode())])


def build(split: Split, kind: str, n: int, seed: int, stage: str, texts: dict[str, str] | None = None,
          window: int = 20, include_target: bool = True) -> CandidateSet:
    """Build one candidate set over the items that occur in the split.

    Negatives are items the user never interacted with (in any part of the split; for `window`,
    only the last `window` history items are excluded) and, on a cold-start split, warm items only;
    the positive is the user's `stage` target and appears exactly once; list order is shuffled
    for sampled/pop/window/bm25. `bm25` needs each item's text (`texts`). Users with several
    held-out items (a ratio split) get `full` lists with all of them; the other kinds refuse them.
    """
    if kind != "full" and split.ratio:
        raise ConfigError(f"{kind} candidates hold one held-out item per list; a ratio split (split.ratio="
                          f"{split.ratio!r}) holds out several per user: use candidates.kinds=['full']")
    universe = sorted({i for s in split for i in s.items}, key=natural_key)
    index = {i: k for k, i in enumerate(universe)}
    rng = _rng(seed, kind, stage)
    weights = None
    if kind == "pop":
        counts = train_item_counts(split, universe).astype(np.float64)
        weights = counts + 1e-9 * counts.sum() / len(universe)  # unseen-in-train items: almost never
    if kind == "bm25":
        return _bm25(split, universe, index, n, seed, stage, texts or {}, window, include_target, rng)
    cs = CandidateSet(kind, None if kind == "full" else n, seed, stage, split.dataset_hash)
    cold = [index[i] for i in split.cold_items if i in index]
    for s in split.evaluated(stage):
        if kind == "full":  # every item the user never interacted with, and their held-out item(s)
            held = s.targets(stage)
            seen = np.zeros(len(universe), dtype=bool)
            seen[[index[i] for i in s.items]] = True
            seen[cold] = True
            ids = np.sort(np.append(np.flatnonzero(~seen), [index[i] for i in held]))
            cs.lists.append(CandidateList(s.user_id, held[0], tuple(universe[k] for k in ids), more=held[1:]))
            continue
        pos = s.target(stage)
        seen = np.zeros(len(universe), dtype=bool)
        excluded = s.history(stage, window) + (pos,) if kind == "window" else s.items
        seen[[index[i] for i in excluded]] = True
        seen[cold] = True  # never a negative (no-op on splits without cold items)
        pool = np.flatnonzero(~seen)
        if len(pool) < n - 1:
            raise DataError(f"user {s.user_id!r} has only {len(pool)} unseen items, fewer than the "
                            f"{n - 1} negatives candidates.n={n} needs")
        p = None
        if weights is not None:
            w = weights[pool]
            p = w / w.sum()
        neg = rng.choice(pool, size=n - 1, replace=False, p=p)
        ids = np.append(neg, index[pos])
        rng.shuffle(ids)
        cs.lists.append(CandidateList(s.user_id, pos, tuple(universe[k] for k in ids)))
    return cs


def _bm25(split: Split, universe: list[str], index: dict[str, int], n: int, seed: int, stage: str,
          texts: dict[str, str], window: int, include_target: bool, rng: np.random.Generator) -> CandidateSet:
    """Per user, the unseen items ranked by BM25 between their text and the text of the last
    `window` history items; too few matches (score 0) are filled uniformly from the other unseen
    items, and the fill is counted in the file's meta."""
    import bm25s

    missing = [i for i in universe if not texts.get(i)]
    if missing:
        raise DataError(f"bm25 candidates need every item's text; {len(missing)} have none (e.g. {missing[:3]})")
    quiet = {"show_progress": False}
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([texts[i] for i in universe], stopwords="en", **quiet), **quiet)
    label = "bm25" if include_target else "bm25-notarget"
    cs = CandidateSet("bm25", n, seed, stage, split.dataset_hash, subset="" if include_target else "notarget")
    cold = {index[i] for i in split.cold_items if i in index}
    filled = 0
    users = list(split.evaluated(stage))
    queries = [" ".join(texts[i] for i in s.history(stage, window)) for s in users]
    k = min(len(universe), n + max(len(s.items) for s in users) + len(cold))
    found, scores = retriever.retrieve(bm25s.tokenize(queries, stopwords="en", **quiet), k=k, **quiet)
    for s, row, score in zip(users, found, scores):
        pos = s.target(stage)
        seen = {index[i] for i in s.items} | cold
        if not include_target:
            seen.discard(index[pos])  # retrieved as it comes: the target counts only if BM25 ranks it in
        want = n - 1 if include_target else n
        hits = [int(j) for j, sc in zip(row, score) if sc > 0 and int(j) not in seen][:want]
        if len(hits) < want:
            rest = np.setdiff1d(np.flatnonzero(~np.isin(np.arange(len(universe)), list(seen))), hits)
            if len(rest) < want - len(hits):
                raise DataError(f"user {s.user_id!r} has too few unseen items for {label}-{n}")
            extra = rng.choice(rest, size=want - len(hits), replace=False)
            filled += len(extra)
            hits += [int(j) for j in extra]
        if include_target:
            ids = np.array([*hits, index[pos]])
            rng.shuffle(ids)
            cs.lists.append(CandidateList(s.user_id, pos, tuple(universe[j] for j in ids)))
        else:
            found_it = index[pos] in hits
            cs.lists.append(CandidateList(s.user_id, pos if found_it else None, tuple(universe[j] for j in hits),
                                          None if found_it else pos))
    cs.filled = filled
    return cs


def subset(cs: CandidateSet, split: Split, which: str) -> CandidateSet:
    """The lists of `cs` whose target is a cold (held-out) item, or a warm one (`which`)."""
    assert which in ("cold", "warm") and not cs.subset
    keep = [c for c in cs.lists if ((c.positive or c.missed) in split.cold_items) == (which == "cold")]
    return CandidateSet(cs.kind, cs.n, cs.seed, cs.stage, cs.dataset_hash, keep, which)
