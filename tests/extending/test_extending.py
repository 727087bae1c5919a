"""Extending llmrec from outside the package: a toy data format, prompt style, backend and baseline,
each registered in its registry by this file (no llmrec module changes), run end to end through
`prepare`, `rank`, `baseline` and `compare` as a user's plugin would be (docs/extending.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from llmrec.backends import BACKENDS, ScoreRequest
from llmrec.baselines import TrainData
from llmrec.cli import main
from llmrec.data.dataset import Dataset, Item
from llmrec.errors import ConfigError, DataError
from llmrec.models.generate import Generated, GenerateSettings
from llmrec.prompts.style import PromptStyle, Scorable
from llmrec.registry import BASELINES, DERIVE, FORMATS, STYLES
from llmrec.scoring.rank import LLMRanker, Scored


# -- a data format: "user item" lines, items as "item<TAB>title" -----------------------------------
def load_pairs(cfg, log=print) -> Dataset:
    rows = []
    for n, line in enumerate(Path(cfg.path).read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{cfg.path}:{n}: expected 'user item'")
        rows.append((parts[0], parts[1], 1.0, float(n), n - 1))
    items = {}
    for line in Path(cfg.items_path).read_text().splitlines():
        item_id, title = line.split("\t")
        items[item_id] = Item(item_id, title)
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "row"])
    return Dataset(cfg.dataset, items, frame, {}, cfg.item_noun)


# -- a prompt style: a candidate's score is the log-probability of its title's first token ----------
class FirstToken:
    def build(self, ps: PromptStyle, user_id, history, items) -> list[Scorable]:
        prompt = ps.builder.build(history, reserve=2, user_id=user_id, **ps.user_vars(user_id))
        return [Scorable(prompt, [ps.builder.answer_ids(prompt, ps.target_text(i))[:1] for i in items])]

    def score(self, ranker: LLMRanker, queries) -> list[Scored]:
        out = []
        for q in queries:
            (s,), _ = ranker.scorables(q)
            (lps,) = ranker.backend.continuation_logprobs([ScoreRequest(s.prompt.ids, s.answers)])
            out.append(Scored(q.user_id, q.candidates, np.array([lp[0] for lp in lps]), s.prompt.dropped,
                              len(s.prompt.ids)))
        return out

    def examples(self, ps, rng, negatives, user_id, history, target, n=20) -> list[tuple]:
        (s,) = self.build(ps, user_id, history, [target])
        return [(s.prompt, s.answers[0], (target,), (target,), ())]


# -- a backend: no model; a token's log-probability is a fixed function of its id and a setting -----
@dataclass(frozen=True)
class ParitySettings:
    odd_bonus: float = 1.0


class ParityBackend:
    name, max_length, caches_prefixes, slots = "parity", 4096, False, None
    built: ClassVar[list[ParitySettings]] = []  # the settings of every backend built, for the test to read

    def __init__(self, model: str, *, adapter: str = "", device: str = "auto", dtype: str = "auto",
                 settings: ParitySettings | None = None) -> None:
        self.settings = settings or ParitySettings()
        ParityBackend.built.append(self.settings)

    def _lp(self, token: int) -> float:
        return -1.0 + (self.settings.odd_bonus if token % 2 else 0.0)

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[np.ndarray]]:
        return [[np.array([self._lp(t) for t in c]) for c in r.continuations] for r in requests]

    def next_token_logprobs(self, prompts, token_ids) -> list[np.ndarray]:
        return [np.array([self._lp(t) for t in ids]) for ids in token_ids]

    def generate(self, prompts, settings: GenerateSettings, tokenizer) -> list[Generated]:
        return [Generated([], True) for _ in prompts]

    def close(self) -> None:
        pass


# -- a baseline: the most recently interacted items first (a setting: how recent) -------------------
class Recency:
    name = "recency"

    def __init__(self, window: int = 10) -> None:
        if window < 1:
            raise ConfigError(f"baseline.recency.window: must be >= 1; got {window}")
        self.window = window

    def fit(self, data: TrainData) -> Recency:
        self.last = np.zeros(len(data.items))
        for seq in data.sequences:
            for rank, item in enumerate(seq[-self.window:]):
                self.last[item] = max(self.last[item], rank + 1)
        return self

    def score_all(self, users: np.ndarray, stage: str = "test") -> np.ndarray:
        return np.tile(self.last, (len(users), 1))

    def vectors(self) -> None:
        return None


@pytest.fixture
def plugins():
    FORMATS.register("pairs", load_pairs, requires=("path", "items_path"))
    STYLES.register("first-token", FirstToken, shuffled=False, choices=False, draws=False)
    BACKENDS.register("parity", ParityBackend, settings=ParitySettings, section="parity")
    BASELINES.register("recency", Recency, settings=DERIVE, reads=())
    yield
    for registry, name in ((FORMATS, "pairs"), (STYLES, "first-token"), (BACKENDS, "parity"),
                           (BASELINES, "recency")):
        registry.unregister(name)


@pytest.fixture
def toy_data(tmp_path):
    rng = np.random.default_rng(0)
    titles = ["Alien", "Brazil", "Casablanca", "Dune", "Eraserhead", "Fargo", "Gattaca", "Heat", "Ikiru", "Jaws",
              "Koyaanisqatsi", "Laura"]
    (tmp_path / "items.tsv").write_text("".join(f"i{k}\t{t}\n" for k, t in enumerate(titles)))
    lines = [f"u{u} i{i}" for u in range(12) for i in rng.choice(len(titles), size=6, replace=False)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    template = tmp_path / "first_v1.j2"
    template.write_text("{#\nstyle: first-token\nanswer: the first token of the next title\n#}\n"
                        "Watched:{% for h in history %} {{ h.title }};{% endfor %}\nNext:")
    return tmp_path


def test_toys_run_through_prepare_rank_baseline_and_compare(plugins, toy_data, tmp_path, capsys):
    out = tmp_path / "prepared"
    data = [f"out_dir={out}", "data.format=pairs", "data.dataset=toy", f"data.path={toy_data / 'pairs.txt'}",
            f"data.items_path={toy_data / 'items.tsv'}", "candidates.kinds=['sampled']", "candidates.n=5",
            "candidates.stages=['test','valid']"]
    assert main(["prepare", *data]) == 0
    assert "12 users" in capsys.readouterr().out
    template = str(toy_data / "first_v1.j2")
    assert main(["rank", "-t", template, "--backend", "parity", "backend.parity.odd_bonus=2.5",
                 "--candidates", "sampled-5.test", *data[:1]]) == 0
    assert ParityBackend.built[-1] == ParitySettings(2.5)  # the [backend.parity] table reached the backend
    rank_dir = next((out / "rank").iterdir())
    rows = [json.loads(x) for x in (rank_dir / "ranks.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {len(r["candidates"]) for r in rows} == {5}
    assert set(np.round([s for r in rows for s in r["scores"]], 6)) <= {-1.0, 1.5}  # the toy backend's values
    meta = json.loads((rank_dir / "run.json").read_text())
    assert meta["settings"]["backend"] == "parity" and meta["settings"]["template"] == template
    assert main(["baseline", "--name", "recency", "baseline.recency.window=3", "baseline.candidates=['sampled-5.test']",
                 *data[:1]]) == 0
    base_dir = out / "baselines" / "recency--sampled-5.test"
    assert json.loads((base_dir / "run.json").read_text())["settings"]["window"] == 3
    capsys.readouterr()
    assert main(["compare", str(rank_dir), str(base_dir), "--reference", "recency", "--out", str(tmp_path / "cmp"),
                 "--bootstrap", "50", "--permutations", "50"]) == 0
    table = capsys.readouterr().out
    assert "| recency |" in table and template in table and (tmp_path / "cmp" / "compare.json").is_file()


def test_toys_are_checked_like_built_ins(plugins, toy_data, capsys):
    assert main(["baseline", "--name", "recency", "baseline.recency.windw=3"]) == 2
    assert "unknown config key 'baseline.recency.windw'; known keys: ['window']" in capsys.readouterr().err
    assert main(["rank", "--backend", "parity", "backend.parity.bonus=1"]) == 2
    assert "unknown config key 'backend.parity.bonus'" in capsys.readouterr().err
    assert "recency" in BASELINES.names() and "parity" in BACKENDS.names() and "first-token" in STYLES.names()


def test_unregistered_names_are_refused(capsys):
    assert main(["rank", "--backend", "parity"]) == 2
    assert "rank.backend: unknown backend 'parity'; known: hf, vllm" in capsys.readouterr().err
    assert main(["prepare", "data.format=pairs", "data.path=x", "data.items_path=y"]) == 2
    assert "data.format: unknown data format 'pairs'; known: csv, hf, jsonl, parquet, recbole" in capsys.readouterr().err
