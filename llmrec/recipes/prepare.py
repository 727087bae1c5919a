"""`llmrec prepare`: load and filter the data, split it, build and save the candidate sets.

Writes into `cfg.out_dir`: config.toml (resolved), prepared.json (the data and split settings,
which every later command reads back), stats.json, split.jsonl and
candidates/<kind>-<n>.<stage>.jsonl. With `split.cold_items` (a share of the items held out of
training, see `hold_out_items`) the test files are also written for the users whose target is
cold and for those whose target is warm (`<kind>-<n>-cold.test.jsonl`, `...-warm.test.jsonl`).
Later steps read these files and never re-sample. A folder
already prepared from other data (or another split order) is only replaced with `force`: its runs
would silently stop matching their candidate files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmrec.config import Config, dump_toml
from llmrec.data import candidates as cands
from llmrec.data.loaders import apply_filters, load_raw, registered_download
from llmrec.data.prepared import differences, prepare_command, read_record, write_record
from llmrec.data.split import Split, by_ratio, global_time, hold_out_items, leave_one_out
from llmrec.errors import ConfigError, DataError


@dataclass
class PrepareResult:
    out_dir: Path
    stats_raw: dict[str, Any]
    stats: dict[str, Any]
    candidate_files: list[Path]


def format_stats(raw: dict[str, Any], filtered: dict[str, Any]) -> str:
    rows = ["users", "items", "items_with_interactions", "interactions", "density", "history_len_min",
            "history_len_median", "history_len_max", "rating_mean"]
    lines = [f"{'':26s}{'before filtering':>18s}{'after filtering':>18s}"]
    lines += [f"{k:26s}{raw[k]!s:>18s}{filtered[k]!s:>18s}" for k in rows]
    return "\n".join(lines)


def make_split(cfg: Config, dataset) -> Split:
    """The configured split of the filtered data (an error when it leaves no user to evaluate)."""
    s = cfg.split
    if s.method == "global-time":
        split = global_time(dataset, s.cut, s.tie_break, s.seed)
    elif s.method == "ratio":
        split = by_ratio(dataset, s.ratio, s.tie_break, s.seed)
    else:
        split = leave_one_out(dataset, s.tie_break, s.seed)
    if len(split) == len(split.train_only):
        raise DataError(f"the {s.method} split left no user to evaluate ({len(split.train_only)} train only, "
                        f"{split.skipped_users} skipped)"
                        + (f"; split.cut={s.cut!r} may lie outside the log's time range" if split.cut is not None else ""))
    return split


def describe(cfg: Config, split: Split, stats: dict[str, Any]) -> str:
    """One line on how the users were split."""
    if split.cut is not None:
        when = datetime.fromtimestamp(split.cut, UTC).isoformat(timespec="seconds")
        return (f"global-time split at {when} (split.cut={cfg.split.cut!r}): {len(split) - len(split.train_only)} "
                f"users with a new item after the cut, {len(split.train_only)} train only, {split.skipped_users} "
                f"skipped with too few items before the cut")
    if split.ratio:
        return (f"ratio split {split.ratio}: {len(split)} users, {stats['held_out_valid_items']} validation and "
                f"{stats['held_out_test_items']} test items held out ({split.skipped_users} skipped with < 3 items)")
    return f"leave-one-out split: {len(split)} users ({split.skipped_users} skipped with < 3 interactions)"


def run(cfg: Config, log=print, force: bool = False) -> PrepareResult:
    out = Path(cfg.out_dir)
    record = read_record(out) if out.is_dir() else None
    if record is not None and record.get("complete", True) is False:
        record = None  # a prepare that failed half-way: its files are replaced, whatever it was given
    if record is not None and not force:
        diffs = differences(cfg, record)
        if diffs:
            raise ConfigError(f"{out} was prepared from other data ({'; '.join(diffs)}); replacing it would "
                              f"orphan its runs: prepare another out_dir, or replace it with "
                              f"`{prepare_command(cfg, force=True)}`")

    log(f"prepare: {cfg.data.dataset} ({'registered' if registered_download(cfg.data) else cfg.data.format}) -> {out}")
    raw = load_raw(cfg.data, log)
    dataset = apply_filters(raw, cfg.data)
    split = make_split(cfg, dataset)
    if cfg.split.cold_items:
        split = hold_out_items(split, cfg.split.cold_items, cfg.split.seed)
    (out / "candidates").mkdir(parents=True, exist_ok=True)
    write_record(out, cfg, split.dataset_hash, complete=False)
    (out / "config.toml").write_text(dump_toml(cfg))

    stats = dataset.stats()
    stats["split_users"] = len(split)
    if split.cut is not None:
        stats["train_only_users"] = len(split.train_only)
    stats["skipped_users_lt3"] = split.skipped_users
    stats["repeats_dropped"] = split.repeats_dropped
    stats["dataset_hash"] = split.dataset_hash
    if split.ratio:
        stats["held_out_test_items"] = sum(s.n_test for s in split)
        stats["held_out_valid_items"] = sum(s.n_valid for s in split)
    if split.cold_items:
        stats["cold_items"] = len(split.cold_items)
        stats["cold_test_users"] = sum(s.test in split.cold_items for s in split)
    stats_raw = raw.stats()
    (out / "stats.json").write_text(json.dumps({"before_filtering": stats_raw, "after_filtering": stats},
                                               indent=1))
    split.save(out / "split.jsonl")

    files = []
    texts = {i: " ".join([it.title, *it.genres]) for i, it in dataset.items.items()} \
        if "bm25" in cfg.candidates.kinds else None
    kinds = cfg.candidates.kinds
    if split.ratio and kinds != ("full",):  # several held-out items per user: ranked among the whole catalogue
        log(f"ratio split: the held-out items are ranked among every unseen item (full); candidates.kinds "
            f"{[k for k in kinds if k != 'full']} hold one held-out item per list and are not built")
        kinds = ("full",)
    for kind in kinds:
        for stage in cfg.candidates.stages:
            cs = cands.build(split, kind, cfg.candidates.n, cfg.candidates.seed, stage, texts,
                             cfg.split.history_len, cfg.candidates.include_target)
            subsets = ([cands.subset(cs, split, w) for w in ("cold", "warm")]
                       if split.cold_items and stage == "test" and not cs.subset else [])
            for c in (cs, *subsets):
                path = out / "candidates" / c.filename
                c.save(path)
                files.append(path)

    write_record(out, cfg, split.dataset_hash)
    log(f"dataset {dataset.name} ({split.dataset_hash})")
    log(format_stats(stats_raw, stats))
    how = describe(cfg, split, stats)
    log(f"{how}; same-timestamp ties ordered by {split.tie_break} (seed {split.seed}); "
        f"{dataset.duplicate_rows_dropped} exact duplicate rows and {split.repeats_dropped} repeated items dropped")
    if split.cold_items:
        log(f"cold start: {len(split.cold_items)} items ({cfg.split.cold_items:.0%}, seed {cfg.split.seed}) held out of "
            f"training; {stats['cold_test_users']} test users have a cold target")
    for p in files:
        log(f"wrote {p}")
    return PrepareResult(out, stats_raw, stats, files)
