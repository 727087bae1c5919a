"""Paired comparison of saved runs: bootstrap intervals, randomization tests, Holm correction.

Runs are compared user by user on the users they share, and only when they scored the same
candidate file (same sha256): a method that saw easier lists would otherwise win for free.
- 95% intervals: percentile bootstrap over users (Efron & Tibshirani, 1993).
- p-values: paired randomization (sign-flip) test of the mean per-user difference against the
  reference run (Smucker, Allan & Carterette, 2007), two-sided.
- Holm (1979) step-down correction across the variants compared with the reference.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import DataError
from llmrec.eval import runs
from llmrec.eval.metrics import METRICS, user_rows_metrics


@dataclass
class LoadedRun:
    name: str
    path: Path
    meta: dict[str, Any]
    per_user: dict[str, dict[str, float]]


def run_label(meta: dict[str, Any], path: Path) -> str:
    s = meta.get("settings", {})
    if s.get("kind") == "baseline":
        return s["model"]
    label = s.get("template", path.name)
    if s.get("scoring", "sum") != "sum":
        label += f" ({s['scoring']})"
    if s.get("adapter"):
        label += f" + {adapter_label(s['adapter'])}"
    return label


def adapter_label(adapter: str) -> str:
    """`runs/.../adapters/lora--letters-candidates_v1/best` -> `lora--letters-candidates_v1`."""
    path = Path(adapter)
    return path.parent.name if path.name in ("best", "adapter") and path.parent.name else path.name


def load(path: str | Path) -> LoadedRun:
    path = Path(path)
    meta = runs.load_run(path)
    return LoadedRun(run_label(meta, path), path, meta, user_rows_metrics(runs.read_ranks(path)))


def bootstrap_ci(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def randomization_p(d: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    if not np.any(d):
        return 1.0
    observed = abs(d.mean())
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, len(d)))
    null = np.abs((signs * d).mean(1))
    return float((np.sum(null >= observed - 1e-12) + 1) / (n_perm + 1))


def holm(pvalues: list[float]) -> list[float]:
    m = len(pvalues)
    order = np.argsort(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def compare(paths: list[str | Path], reference: str | None = None, n_boot: int = 2000, n_perm: int = 10000,
            seed: int = 0) -> dict[str, Any]:
    """Table of every run's metrics with intervals and tests against `reference` (a label or path)."""
    for flag, n in (("--bootstrap", n_boot), ("--permutations", n_perm)):
        if n < 10:  # fewer resamples give no interval or p-value worth reporting (and 0 a traceback)
            raise DataError(f"{flag} {n}: must be at least 10 resamples")
    seen: dict[Path, str | Path] = {}
    for p in paths:  # a run against itself would be reported as a (perfectly null) comparison
        key = Path(p).resolve()
        if key in seen:
            raise DataError(f"run directory {p} is given twice (as {seen[key]} and {p}, both {key}); "
                            "compare needs distinct runs")
        seen[key] = p
    loaded = [load(p) for p in paths]
    if len(loaded) < 2:
        raise DataError("compare needs at least two run directories")
    sources = {r.meta["settings"].get("source_sha256") for r in loaded}
    if len(sources) > 1:
        detail = "; ".join(f"{r.path}: {r.meta['settings'].get('source')}" for r in loaded)
        raise DataError(f"runs were scored on different candidate files, refusing to compare them ({detail})")
    names = [r.name for r in loaded]
    for k, r in enumerate(loaded):  # disambiguate equal labels by their directory
        if names.count(r.name) > 1:
            r.name = f"{r.name} [{r.path.name}]"
    ref = loaded[0]
    if reference is not None:
        match = [r for r in loaded if reference in (r.name, str(r.path), r.path.name)]
        if not match:
            raise DataError(f"reference {reference!r} is none of the runs: {[r.name for r in loaded]}")
        ref = match[0]
    users = sorted(set.intersection(*(set(r.per_user) for r in loaded)))
    if not users:
        raise DataError("the runs share no users")
    rng = np.random.default_rng(seed)
    table, p_raw = [], []
    for r in loaded:
        row: dict[str, Any] = {"run": r.name, "path": str(r.path), "users": len(users)}
        for m in METRICS:
            x = np.array([r.per_user[u][m] for u in users])
            lo, hi = bootstrap_ci(x, n_boot, rng)
            row[m] = float(x.mean())
            row[f"{m}_ci"] = [lo, hi]
        if r is not ref:
            d = np.array([r.per_user[u]["NDCG@10"] - ref.per_user[u]["NDCG@10"] for u in users])
            row["diff_NDCG@10"] = float(d.mean())
            row["p_NDCG@10"] = randomization_p(d, n_perm, rng)
            p_raw.append(row["p_NDCG@10"])
        table.append(row)
    adjusted = iter(holm(p_raw))
    for row in table:
        if "p_NDCG@10" in row:
            row["p_holm_NDCG@10"] = next(adjusted)
    return {"reference": ref.name, "users": len(users), "candidates": ref.meta["settings"].get("source"),
            "n_boot": n_boot, "n_perm": n_perm, "seed": seed, "rows": table}


def to_markdown(result: dict[str, Any]) -> str:
    head = ["run", "HR@1", "HR@5", "NDCG@5", "NDCG@10 [95% CI]", "MRR", "Δ NDCG@10 vs ref", "p (Holm)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(result["rows"], key=lambda r: -r["NDCG@10"]):
        lo, hi = r["NDCG@10_ci"]
        is_ref = r["run"] == result["reference"]
        diff = "ref" if is_ref else f"{r['diff_NDCG@10']:+.3f}"
        p = "" if is_ref else f"{r['p_holm_NDCG@10']:.3g}"
        lines.append(f"| {r['run']} | {r['HR@1']:.3f} | {r['HR@5']:.3f} | {r['NDCG@5']:.3f} | "
                     f"{r['NDCG@10']:.3f} [{lo:.3f}, {hi:.3f}] | {r['MRR']:.3f} | {diff} | {p} |")
    lines.append("")
    lines.append(f"{result['users']} users, candidates `{result['candidates']}`; 95% percentile bootstrap "
                 f"({result['n_boot']} resamples); paired randomization test on NDCG@10 against "
                 f"`{result['reference']}` ({result['n_perm']} sign flips), Holm-corrected.")
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """compare.md, compare.csv, compare.json and compare.png (NDCG@10 with intervals).

    An unwritable folder is a DataError naming it, so the CLI reports one line, not a traceback.
    """
    out = Path(out_dir)
    try:
        return _write_report(result, out)
    except OSError as e:
        why = "it exists and is not a folder" if out.exists() and not out.is_dir() else (e.strerror or str(e))
        where = f": {e.filename}" if e.filename and str(e.filename) != str(out) else ""
        raise DataError(f"{out}: cannot write the comparison report ({why}{where})") from None


def _write_report(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(to_markdown(result))
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "users", *[x for m in METRICS for x in (m, f"{m}_lo", f"{m}_hi")],
                    "diff_NDCG@10", "p_NDCG@10", "p_holm_NDCG@10"])
        for r in result["rows"]:
            w.writerow([r["run"], r["users"], *[x for m in METRICS for x in (r[m], *r[f"{m}_ci"])],
                        r.get("diff_NDCG@10", ""), r.get("p_NDCG@10", ""), r.get("p_holm_NDCG@10", "")])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(result["rows"], key=lambda r: r["NDCG@10"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    vals = [r["NDCG@10"] for r in rows]
    err = np.array([[r["NDCG@10"] - r["NDCG@10_ci"][0], r["NDCG@10_ci"][1] - r["NDCG@10"]] for r in rows]).T
    colors = ["tab:orange" if r["run"] == result["reference"] else "tab:blue" for r in rows]
    ax.barh([r["run"] for r in rows], vals, xerr=err, color=colors, capsize=3)
    ax.set_xlabel(f"NDCG@10 (95% bootstrap CI), {result['users']} users")
    ax.set_title(f"candidates: {Path(str(result['candidates'])).name}")
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=120)
    plt.close(fig)
    return [out / n for n in ("compare.md", "compare.csv", "compare.json", "compare.png")]
