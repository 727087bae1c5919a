"""Score blends: a per-user z-scored weighted sum of runs scored on the same candidate file.

The cheap reference for collaborative LLM ranking: before crediting a model that joins an LLM
with collaborative filtering, see what adding the two runs' scores already gives. Runs score on
different scales (log-likelihoods, dot products, counts), so each user's scores are z-scored
over that user's candidates first. The weights lie on the simplex and are chosen on the
validation candidates (grid search, mean NDCG@10), never on the test candidates they are
reported on. The result is an ordinary run directory (`llmrec/eval/runs.py`) with every
candidate's score at full precision, so `llmrec evaluate`, `compare` and `blend` take it too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.assets import sha256_file
from llmrec.errors import DataError
from llmrec.eval import runs
from llmrec.eval.metrics import expected_ranks, metrics_of_rows, ndcg

SOURCE_KEYS = ("source", "source_sha256")
MAX_GRID = 200_000


@dataclass
class UserScores:
    candidates: list[str]
    scores: np.ndarray
    positive: str | None
    missed: bool


@dataclass
class ScoredRun:
    """A run's per-user scores for every candidate: all that blending reads."""

    path: Path
    meta: dict[str, Any]
    users: dict[str, UserScores]  # in file order

    @property
    def settings(self) -> dict[str, Any]:
        return self.meta.get("settings", {})


@dataclass
class BlendResult:
    run_dir: Path
    names: list[str]
    weights: list[float]
    step: float | None
    metrics: dict[str, float]
    users: int
    users_dropped: int
    valid: dict[str, Any] | None  # users, per-run and blend NDCG@10 on the validation candidates


def load_scored(path: str | Path) -> ScoredRun:
    """A run's rows as score arrays (whether they list every candidate is `check_candidates`' job)."""
    path = Path(path)
    meta = runs.load_run(path)
    rows = runs.read_ranks(path)
    if not rows:
        raise DataError(f"{path / runs.RANKS}: missing or empty, nothing to blend")
    run = ScoredRun(path, meta, {})
    for r in rows:
        if "candidates" not in r or "scores" not in r:
            raise DataError(f"{path / runs.RANKS}: user {r['user_id']!r} has no candidates and scores to blend")
        if r.get("positives"):
            raise DataError(f"{path / runs.RANKS}: user {r['user_id']!r} has {len(r['positives'])} held-out items (a "
                            "ratio split); blend weighs runs on one held-out item per user")
        u = UserScores(list(r["candidates"]), np.asarray(r["scores"], dtype=np.float64), r.get("positive"),
                       bool(r.get("missed")))
        if len(u.candidates) != len(u.scores) or len(set(u.candidates)) != len(u.candidates):
            raise DataError(f"{path / runs.RANKS}: user {r['user_id']!r} has a malformed candidate/score list")
        if np.isnan(u.scores).any() or np.isposinf(u.scores).any():
            raise DataError(f"{path / runs.RANKS}: user {r['user_id']!r} has a NaN or +inf score")
        run.users[r["user_id"]] = u
    return run


def _cut_message(run: ScoredRun, user: str) -> str:
    label = Path(str(run.settings.get("source", "?"))).name.removesuffix(".jsonl")
    cmd = _command(run, label, f"{run.path}-all")
    how = f"rerun it with every candidate written: `{cmd}`" if cmd else "rerun it with top_k 0"
    return (f"{run.path} lacks scores for some candidates of user {user!r} (written with a top_k cut); "
            f"a blend needs every candidate's score: {how}")


def check_candidates(scored: list[ScoredRun], users: list[str]) -> None:
    """Every run must score the same candidates per user: those of the candidate file when it is at
    hand, else the longest list among the runs; a shorter list, or one without the held-out item,
    was cut by `top_k`."""
    truth: dict[str, set[str]] = {}
    source = Path(str(scored[0].settings.get("source", "")))
    if source.is_file() and sha256_file(source) == scored[0].settings.get("source_sha256"):
        from llmrec.data.candidates import CandidateSet

        truth = {c.user_id: set(c.candidates) for c in CandidateSet.load(source).lists}
    for u in users:
        longest = max(scored, key=lambda r: len(r.users[u].candidates))
        want, where = (truth[u], source) if u in truth else (set(longest.users[u].candidates), longest.path)
        for r in scored:
            have = set(r.users[u].candidates)
            if have < want or (r.users[u].positive is not None and r.users[u].positive not in have):
                raise DataError(_cut_message(r, u))
            if have != want:
                raise DataError(f"user {u!r} has other candidates in {r.path} than in {where}; "
                                "the runs cannot be blended")
            if r.users[u].positive != scored[0].users[u].positive:
                raise DataError(f"user {u!r} has held-out item {r.users[u].positive!r} in {r.path} but "
                                f"{scored[0].users[u].positive!r} in {scored[0].path}")


def same_source(scored: list[ScoredRun]) -> tuple[str, str]:
    shas = {r.settings.get("source_sha256") for r in scored}
    if len(shas) > 1 or None in shas:
        detail = "; ".join(f"{r.path}: {r.settings.get('source')}" for r in scored)
        raise DataError(f"runs were scored on different candidate files, refusing to blend them ({detail})")
    return str(scored[0].settings.get("source")), str(shas.pop())


def common_users(scored: list[ScoredRun], what: str) -> tuple[list[str], int]:
    """Users every run has (in the first run's order) and how many of the others' users were dropped."""
    shared = set.intersection(*(set(r.users) for r in scored))
    if not shared:
        raise DataError(f"the {what} runs share no users: " + ", ".join(str(r.path) for r in scored))
    users = [u for u in scored[0].users if u in shared]
    return users, len(set.union(*(set(r.users) for r in scored))) - len(users)


def zscore(scores: np.ndarray) -> np.ndarray:
    """Scores in standard deviations from the user's mean, so runs on any scale add up; -inf (an
    item a model never saw) counts as the user's lowest finite score; equal scores give zeros."""
    s = np.asarray(scores, dtype=np.float64).copy()
    finite = np.isfinite(s)
    if not finite.any():
        return np.zeros_like(s)
    s[~finite] = s[finite].min()
    std = s.std()
    return (s - s.mean()) / std if std > 0 else np.zeros_like(s)


@dataclass
class Stacked:
    """The runs' z-scores for the same users and candidates, padded with NaN (never ranks)."""

    users: list[str]
    candidates: list[list[str]]  # per user, in the first run's order
    z: np.ndarray  # users x runs x max candidates
    positive: np.ndarray  # index of the held-out item per user, -1 for none or a retriever miss


def stack(scored: list[ScoredRun], users: list[str]) -> Stacked:
    check_candidates(scored, users)
    width = max(len(scored[0].users[u].candidates) for u in users)
    z = np.full((len(users), len(scored), width), np.nan)
    cands, pos = [], np.full(len(users), -1)
    for i, u in enumerate(users):
        order = scored[0].users[u].candidates
        cands.append(order)
        for j, r in enumerate(scored):
            row = r.users[u]
            by_item = dict(zip(row.candidates, zscore(row.scores)))
            z[i, j, :len(order)] = [by_item[c] for c in order]
        p = scored[0].users[u].positive
        if p is not None and not scored[0].users[u].missed:
            pos[i] = order.index(p)
    return Stacked(users, cands, z, pos)


def ndcg10(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per-user NDCG@10 of users x candidates scores (`llmrec.eval.metrics`' rule); a user without
    a positive (a retriever miss) scores 0."""
    return np.where(positive >= 0, ndcg(expected_ranks(scores, positive), 10), 0.0)


def grid_size(step: float) -> int:
    """How many steps make 1: `step` must be a number in (0, 1] dividing 1 evenly (checked before
    `1 / step`, which 0, NaN or a subnormal step would turn into a traceback)."""
    k = round(1 / step) if math.isfinite(step) and 0 < step <= 1 and math.isfinite(1 / step) else 0
    if k < 1 or abs(k * step - 1) > 1e-9:
        raise DataError(f"--step {step}: must be a number in (0, 1] that divides 1 evenly (e.g. 0.05, 0.1, 0.25)")
    return k


def simplex(n: int, step: float) -> np.ndarray:
    """Every weight vector of `n` non-negative multiples of `step` summing to 1."""
    k = grid_size(step)
    if math.comb(k + n - 1, n - 1) > MAX_GRID:
        raise DataError(f"--step {step} gives {math.comb(k + n - 1, n - 1)} weight vectors for {n} runs "
                        f"(more than {MAX_GRID}); choose a larger step")

    def parts(total: int, m: int) -> Iterator[tuple[int, ...]]:
        if m == 1:
            yield (total,)
            return
        for first in range(total, -1, -1):
            for rest in parts(total - first, m - 1):
                yield (first, *rest)

    return np.array(list(parts(k, n)), dtype=np.float64) / k


def search_weights(st: Stacked, step: float) -> tuple[np.ndarray, float]:
    """The grid point with the best mean NDCG@10; ties go to the most even weights."""
    grid = simplex(st.z.shape[1], step)
    means = np.array([ndcg10(np.einsum("ujc,j->uc", st.z, w), st.positive).mean() for w in grid])
    best = np.flatnonzero(means >= means.max() - 1e-12)
    spread = ((grid[best] - 1.0 / grid.shape[1]) ** 2).sum(1)
    k = best[np.argmin(spread)]
    return grid[k], float(means[k])


# --- validation runs ---------------------------------------------------------------------------------

def valid_label(source: str) -> str | None:
    """`.../sampled-20.test.jsonl` -> `sampled-20.valid`: the same candidates drawn for validation."""
    stem = Path(source).name.removesuffix(".jsonl")
    head, _, stage = stem.rpartition(".")
    return f"{head}.valid" if head and stage == "test" else None


def _command(run: ScoredRun, label: str, run_dir: str | None = None) -> str | None:
    """The command that scores candidate file `label` with `run`'s settings, every candidate written,
    into `run_dir` (default: where that run's recipe puts it), filled into the template the run
    recorded (`rerun` in run.json); None for a run without one (a blend, an older run)."""
    rerun = run.meta.get("rerun") or {}
    if not rerun.get("command_on"):
        return None
    where = run_dir or rerun["run_dir_on"].replace("{label}", label)
    return rerun["command_on"].replace("{label}", label).replace("{run_dir}", where)


def _lands(run: ScoredRun, label: str) -> Path | None:
    rerun = run.meta.get("rerun") or {}
    return Path(rerun["run_dir_on"].replace("{label}", label)) if rerun.get("run_dir_on") else None


def _settings_diff(test: ScoredRun, valid: ScoredRun) -> list[str]:
    a = {k: v for k, v in test.settings.items() if k not in SOURCE_KEYS}
    b = {k: v for k, v in valid.settings.items() if k not in SOURCE_KEYS}
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def find_valid(test: ScoredRun) -> Path:
    """The sibling run with `test`'s settings on the validation candidates, or an error that gives
    the command writing it."""
    source = str(test.settings.get("source", ""))
    label = valid_label(source)
    if label is None:
        raise DataError(f"{test.path}: its candidate file {source} is not a `<name>.test.jsonl` file, so its "
                        "validation file is unknown; pass --valid RUN... or --weights")
    found = []
    for d in sorted(p for p in test.path.parent.iterdir() if p.is_dir() and p != test.path):
        try:
            meta = runs.load_run(d)
        except DataError:
            continue
        other = ScoredRun(d, meta, {})
        if Path(str(other.settings.get("source", ""))).name == f"{label}.jsonl" and not _settings_diff(test, other):
            found.append(d)
    cmd, lands = _command(test, label), _lands(test, label)
    if len(found) > 1:
        named = [d for d in found if lands is not None and d.resolve() == lands.resolve()]
        if len(named) != 1:
            raise DataError(f"several validation runs match {test.path}: {', '.join(map(str, found))}; "
                            "choose with --valid")
        found = named
    if found:
        return found[0]
    why = f"no folder next to {test.path} holds a run with its settings on {label}.jsonl"
    if test.settings.get("kind") == "blend":
        raise DataError(f"{test.path} is a blend, which has no validation run; pass --weights")
    if cmd is None:
        raise DataError(f"{why}; score {label}.jsonl with the same settings and pass it with --valid, "
                        "or give --weights")
    beside = lands is not None and lands.parent.resolve() == test.path.parent.resolve()
    raise DataError(f"{why}; write it with `{cmd}`" + ("" if beside else f", then pass --valid {lands}")
                    + ", or give --weights")


def check_valid(test: ScoredRun, valid: ScoredRun) -> None:
    diff = _settings_diff(test, valid)
    if diff:
        raise DataError(f"validation run {valid.path} has other settings than {test.path} ({'; '.join(diff)})")
    if valid.settings.get("source_sha256") == test.settings.get("source_sha256"):
        raise DataError(f"validation run {valid.path} is scored on the test candidates "
                        f"({test.settings.get('source')}); weights must be chosen on validation candidates")


# --- the blend ---------------------------------------------------------------------------------------

def default_out(paths: list[Path]) -> Path:
    """`<parent of the first run>/blend--a+b--<shared suffix>`, hashed down when very long."""
    names = [p.name.split("--") for p in paths]
    tail: list[str] = []
    while all(len(n) > len(tail) + 1 for n in names) and len({n[-1 - len(tail)] for n in names}) == 1:
        tail.insert(0, names[0][-1 - len(tail)])
    heads = ["--".join(n[:len(n) - len(tail)]) for n in names]
    name = "blend--" + "+".join(heads) + ("--" + "--".join(tail) if tail else "")
    if len(name) > 120:
        name = name[:100] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return paths[0].parent / name


def _inputs(paths: list[Path]) -> list[dict[str, str]]:
    return [{"path": str(p), "ranks_sha256": runs.ranks_sha256(p)} for p in paths]


def check_out(out: Path, paths: list[Path]) -> None:
    """A new or empty folder, or a previous blend of the same runs (rewritten whole)."""
    runs.check_run_dir(out)
    if not (out / runs.RUN).is_file():
        return
    s = runs.load_run(out).get("settings", {})
    if s.get("kind") != "blend":
        raise DataError(f"{out} holds another run (kind {s.get('kind', 'unknown')!r}, not a blend); "
                        "choose another --out")
    if [Path(r.get("path", "")).resolve() for r in s.get("runs", [])] != [p.resolve() for p in paths]:
        old = ", ".join(str(r.get("path")) for r in s.get("runs", []))
        raise DataError(f"{out} holds a blend of other runs ({old}); choose another --out")


def _distinct(paths: list[Path], what: str) -> None:
    seen: dict[Path, Path] = {}
    for p in paths:
        if p.resolve() in seen:
            raise DataError(f"{what} run {p} is given twice (as {seen[p.resolve()]} and {p}); blend needs distinct runs")
        seen[p.resolve()] = p


def blend(paths: list[str | Path], out: str | Path | None = None, valid: list[str | Path] | None = None,
          weights: list[float] | None = None, step: float | None = None, log=print) -> BlendResult:
    """Blend `paths` into a run directory; weights given, or searched on the validation runs
    (`valid`, or each run's sibling on the validation candidates)."""
    run_paths = [Path(p) for p in paths]
    if len(run_paths) < 2:
        raise DataError("blend needs at least two run directories")
    _distinct(run_paths, "blended")
    tests = [load_scored(p) for p in run_paths]
    source, source_sha = same_source(tests)
    users, dropped = common_users(tests, "test")
    if dropped:
        log(f"blending the {len(users)} users all runs share ({dropped} users not in every run dropped)")
    st = stack(tests, users)
    names = [p.name for p in run_paths]
    if step is None:
        step = 0.05 if len(tests) <= 3 else 0.1
    grid_size(step)  # a bad --step is refused before any validation run is read

    if valid is not None and len(valid) != len(tests):
        raise DataError(f"--valid names {len(valid)} runs for {len(tests)} blended runs; give one per run, "
                        "in the same order")
    valid_paths = [Path(v) for v in valid] if valid is not None else \
        None if weights is not None else [find_valid(t) for t in tests]
    w: np.ndarray
    valid_report = None
    if valid_paths is not None:
        _distinct(valid_paths, "validation")
        vals = [load_scored(v) for v in valid_paths]
        for t, v in zip(tests, vals):
            check_valid(t, v)
        same_source(vals)
        v_users, v_dropped = common_users(vals, "validation")
        if v_dropped:
            log(f"validation: {len(v_users)} users in every run ({v_dropped} dropped)")
        vst = stack(vals, v_users)
        if weights is None:
            w, _ = search_weights(vst, step)
        else:
            w = _normalise(weights, len(tests))
        singles = [float(ndcg10(vst.z[:, j], vst.positive).mean()) for j in range(len(vals))]
        valid_report = {"runs": _inputs(valid_paths), "users": len(v_users), "ndcg10": singles,
                        "blend_ndcg10": float(ndcg10(np.einsum("ujc,j->uc", vst.z, w), vst.positive).mean())}
    else:
        w = _normalise(weights or [], len(tests))

    out_dir = Path(out) if out is not None else default_out(run_paths)
    check_out(out_dir, run_paths)
    blended = np.einsum("ujc,j->uc", st.z, w)
    rows = []
    for i, u in enumerate(users):
        cands, s = st.candidates[i], blended[i, :len(st.candidates[i])]
        first = tests[0].users[u]
        row = runs.rank_row(u, cands, s, first.positive, 0, first.missed)
        by_item = dict(zip(cands, s))
        row["scores"] = [float(by_item[c]) for c in row["candidates"]]  # full precision: blends can be blended
        rows.append(row)
    metrics = metrics_of_rows(rows)
    hashes = {t.settings.get("dataset_hash") for t in tests}
    settings: dict[str, Any] = {
        "kind": "blend", "runs": _inputs(run_paths), "valid_runs": valid_report["runs"] if valid_report else [],
        "weights": [float(x) for x in w], "weights_from": "given" if weights is not None else "validation",
        "step": step if weights is None else None, "source": source, "source_sha256": source_sha}
    if len(hashes) == 1 and None not in hashes:
        settings["dataset_hash"] = hashes.pop()
    rerun = runs.rerun_record(["llmrec", "blend", *map(str, run_paths), "--weights", ",".join(f"{x:g}" for x in w),
                               "--out", str(out_dir)], [], "")
    with runs.RunWriter(out_dir, settings, "", rerun, rewrite=True) as writer:
        writer.append(rows)
        writer.finish(metrics, users=len(rows), users_dropped=dropped,
                      valid=valid_report and {k: v for k, v in valid_report.items() if k != "runs"})
    return BlendResult(out_dir, names, settings["weights"], settings["step"], metrics, len(rows), dropped,
                       valid_report)


def _normalise(weights: list[float], n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != n:
        raise DataError(f"--weights has {len(w)} values for {n} runs; give one per run, in the same order")
    if not np.isfinite(w).all() or (w < 0).any() or w.max() <= 0:
        raise DataError(f"--weights {','.join(map(str, weights))}: must be finite, non-negative numbers "
                        "with a positive sum")
    w = w / w.max()  # first, so that a sum of huge weights cannot overflow to inf (and every weight to 0)
    return w / w.sum()
