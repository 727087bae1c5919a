"""kg-ppr on sampled-20.test (all users of runs/ml-100k) with no KG, the dataset's KG, the dataset's
KG restricted to the items of the extracted files, and each extracted graph (`llmrec kg-extract`
output), paired against the restricted dataset KG with a bootstrap interval.

Usage: python scripts/compare_kg_graphs.py EXTRACTED.csv [EXTRACTED.csv ...]
"""

import sys

import numpy as np

from llmrec import baselines
from llmrec.config import Config, load_config
from llmrec.data.prepared import open_prepared
from llmrec.eval import runs
from llmrec.eval.metrics import user_rows_metrics
from llmrec.kg import triples
from llmrec.kg.graph import KnowledgeGraph
from llmrec.kg.triples import Triples


def main() -> None:
    cfg = load_config(None, ["out_dir=runs/ml-100k", 'baseline.name="kg-ppr"'], Config)
    prep = open_prepared(cfg, log=lambda *_: None)
    data = baselines.TrainData.from_split(prep.split())
    _, cs = prep.candidates("sampled-20.test")
    full = triples.read(triples.locate(prep.cfg.data))
    extracted = {p: triples.read(p) for p in sys.argv[1:]}
    sample = set(next(iter(extracted.values())).heads) if extracted else set()
    ents = {full.link[i] for i in sample if i in full.link}
    sub = [(h, r, t) for h, r, t in zip(full.heads, full.relations, full.tails) if h in ents or t in ents]
    restricted = Triples([h for h, _, _ in sub], [r for _, r, _ in sub], [t for _, _, t in sub], "dataset KG on sample",
                         {i: e for i, e in full.link.items() if i in sample}, ids_only=True)
    graphs = {"no KG (interactions only)": Triples([], [], [], "none"), "dataset KG (all items)": full, f"dataset KG ({len(sample)} sampled items)": restricted, **extracted}

    def ndcg(tr):
        kg = KnowledgeGraph.build(tr, data.items)
        m = baselines.make("kg-ppr", graph=kg).fit(data)
        users = np.array([data.user_index[c.user_id] for c in cs.lists])
        rows = []
        for start in range(0, len(users), 512):
            sc = baselines.scores_of(m, data, users[start:start + 512], "test")
            for c, s_all in zip(cs.lists[start:start + 512], sc):
                s = np.array([s_all[data.item_index[i]] for i in c.candidates])
                rows.append(runs.rank_row(c.user_id, list(c.candidates), s, c.positive))
        per = user_rows_metrics(rows)
        return kg, {u: v["NDCG@10"] for u, v in per.items()}

    res = {name: ndcg(tr) for name, tr in graphs.items()}
    ref = res[f"dataset KG ({len(sample)} sampled items)"][1]
    rng = np.random.default_rng(0)
    print("| graph | facts (item-entity edges) | items with facts | NDCG@10 | Δ vs dataset KG on the same items [95% CI] |")
    print("|---|---|---|---|---|")
    for name, (kg, per) in res.items():
        users = sorted(per)
        d = np.array([per[u] - ref[u] for u in users])
        boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(2000)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(f"| {name} | {int(kg.incidence().sum())} | {int(kg.linked_items().sum())} | {np.mean([per[u] for u in users]):.4f} | "
              f"{d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    print(f"{len(per)} users, candidates runs/ml-100k/candidates/sampled-20.test.jsonl, kg-ppr defaults")


if __name__ == "__main__":
    main()
