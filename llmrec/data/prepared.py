"""A prepared folder (`llmrec prepare`): the split, the candidate files and the data they came from.

`prepared.json` records the data and split settings the folder was built from. Every command that
reads the folder takes those settings from it, so a command run without `--config` on a folder
prepared from a CSV dataset scores (and records) that dataset, never the embedded default; a
config that names other data is refused with the differences listed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from llmrec.config import Config, DataConfig, SplitConfig, from_dict, load_config, to_dict
from llmrec.data import blocks
from llmrec.data.candidates import CandidateSet, candidate_path
from llmrec.data.dataset import Dataset
from llmrec.data.queries import Job, from_candidates, from_input
from llmrec.data.split import Split
from llmrec.errors import ConfigError, DataError

PREPARED = "prepared.json"
RUN_TIME_SPLIT_KEYS = ("history_len",)  # split settings read at ranking time, not fixed by prepare
RUN_TIME_DATA_KEYS = ("item_noun",)  # only words in prompts: may differ from the folder's record


def _data_fields(data: DataConfig) -> dict[str, Any]:
    return {k: v for k, v in to_dict(data).items() if k not in RUN_TIME_DATA_KEYS}


def _split_fields(split: SplitConfig) -> dict[str, Any]:
    fields = {k: v for k, v in to_dict(split).items() if k not in RUN_TIME_SPLIT_KEYS}
    if not fields["cold_items"]:
        del fields["cold_items"]  # off: recorded as folders prepared before the option existed
    if fields["method"] != "global-time":
        del fields["cut"]  # read by global-time only
    if fields["method"] != "ratio":
        del fields["ratio"]  # read by ratio only
    return fields


def prepare_command(cfg: Config, force: bool = False) -> str:
    """The exact `llmrec prepare` command that builds `cfg.out_dir` from `cfg`'s data settings."""
    default = Config()
    parts = ["llmrec prepare", f"out_dir={json.dumps(cfg.out_dir)}"]
    for section in ("data", "split", "candidates"):
        ours, base = to_dict(getattr(cfg, section)), to_dict(getattr(default, section))
        for key, value in ours.items():
            if value != base[key]:
                parts.append(f"{section}.{key}={json.dumps(value)}")
    if force:
        parts.append("--force")
    return " ".join(parts)


def _diff(section: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{section}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def read_record(out_dir: Path) -> dict[str, Any] | None:
    """The folder's recorded settings: `prepared.json`, or for older folders their `config.toml`."""
    path = out_dir / PREPARED
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: unreadable ({e.msg} at line {e.lineno})") from None
    old = out_dir / "config.toml"
    if old.is_file() and (out_dir / "split.jsonl").is_file():
        return {"data": to_dict(load_config(old).data)}  # the split's own meta says how it was ordered
    return None


def differences(cfg: Config, record: dict[str, Any]) -> list[str]:
    """How `cfg`'s data and split settings differ from a folder's record (empty: the same data)."""
    recorded_data = _data_fields(from_dict(DataConfig, record["data"], prefix="data."))
    return (_diff("data", recorded_data, _data_fields(cfg.data))
            + _diff("split", record.get("split", {}), _split_fields(cfg.split)))


def write_record(out_dir: Path, cfg: Config, dataset_hash: str, complete: bool = True) -> None:
    """`prepared.json`; written incomplete before `prepare` writes anything else and complete when it
    has written everything, so a prepare that failed half-way leaves no record a retry must match."""
    rec = {"data": to_dict(cfg.data), "split": _split_fields(cfg.split), "dataset_hash": dataset_hash,
           **({} if complete else {"complete": False})}
    tmp = out_dir / (PREPARED + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    tmp.replace(out_dir / PREPARED)


@dataclasses.dataclass
class Prepared:
    """Read access to a prepared folder, with the data settings it was built from."""

    out_dir: Path
    cfg: Config  # the caller's config with the recorded data and split settings

    def split(self) -> Split:
        return Split.load(self.out_dir / "split.jsonl")

    def dataset(self, log=print) -> Dataset:
        """The recorded dataset, checked against the split: changed files are an error, not a mix."""
        from llmrec.data.loaders import load_dataset

        ds = load_dataset(self.cfg.data, log)
        split = self.split()
        if ds.fingerprint() != split.dataset_hash:
            raise DataError(f"the data files changed since {self.out_dir} was prepared (dataset {ds.fingerprint()} "
                            f"vs {split.dataset_hash} in split.jsonl); rebuild the folder: "
                            f"`{prepare_command(self.cfg, force=True)}`")
        return ds

    def candidates_path(self, label: str) -> Path:
        path = candidate_path(self.out_dir, label)
        if not path.is_file():
            have = sorted(p.name.removesuffix(".jsonl") for p in (self.out_dir / "candidates").glob("*.jsonl"))
            how = (f"`llmrec baseline --name bpr baseline.retrieve={label.split('-')[1].split('.')[0]} "
                   f"out_dir={json.dumps(str(self.out_dir))}`" if label.startswith("retrieved-")
                   else f"`{prepare_command(self.cfg)}` with candidates.kinds/stages that include it")
            raise DataError(f"candidate file not found: {path}; {self.out_dir} has {have or 'none'}; build it with {how}")
        return path

    def job(self, ds: Dataset) -> Job:
        """The users `rank.input` (a JSONL of histories) or `rank.candidates` (a prepared file) names."""
        r, history_len = self.cfg.rank, self.cfg.split.history_len
        if r.input:
            if blocks.kind_of(Path(r.input), candidates=False) == "parquet":
                src = blocks.plan(Path(r.input), "parquet", 1024)
                return blocks.read_all(src, ds, None, history_len, r.on_unknown)
            return from_input(Path(r.input), ds, history_len, r.on_unknown)
        return from_candidates(self.candidates_path(r.candidates), self.split(), ds, history_len, r.on_unknown)

    def candidates(self, label: str) -> tuple[Path, CandidateSet]:
        path = self.candidates_path(label)
        cs = CandidateSet.load(path)
        cs.check_dataset(self.split().dataset_hash, path)
        return path, cs


def open_prepared(cfg: Config, log=print) -> Prepared:
    """The prepared `cfg.out_dir`, with `cfg`'s data settings replaced by the recorded ones.

    A config that leaves `[data]` and the split at their defaults (no `--config`) takes the folder's
    settings; one that names other data is refused with the differences, never silently mixed.
    """
    out = Path(cfg.out_dir)
    record = read_record(out)
    if record is None:
        raise DataError(f"{out} is not a prepared folder (no {PREPARED}); build it with `{prepare_command(cfg)}`")
    if record.get("complete", True) is False:
        raise DataError(f"{out}: `llmrec prepare` did not finish there; run it again: `{prepare_command(cfg)}`")
    diffs = differences(cfg, record)
    if diffs:
        defaults = not (_diff("data", _data_fields(DataConfig()), _data_fields(cfg.data))
                        + _diff("split", _split_fields(SplitConfig()), _split_fields(cfg.split)))
        if not defaults:
            raise ConfigError(f"{out} was prepared from other data ({'; '.join(diffs)}); use the settings it "
                              f"was prepared with, or prepare another folder: "
                              f"`{prepare_command(dataclasses.replace(cfg, out_dir=str(out) + '-2'))}`")
        log(f"using the data settings recorded in {out}: dataset {record['data'].get('dataset')!r}")
    data = from_dict(DataConfig, record["data"], prefix="data.")
    if cfg.data.item_noun != DataConfig().item_noun:  # a wording chosen for this run
        data = dataclasses.replace(data, item_noun=cfg.data.item_noun)
    split = from_dict(SplitConfig, {**to_dict(cfg.split), **record.get("split", {})}, prefix="split.")
    return Prepared(out, dataclasses.replace(cfg, data=data, split=split))
