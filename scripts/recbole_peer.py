"""Peer run: RecBole 1.2.1's SASRec or NeuMF trained and tested on exactly llmrec's leave-one-out split.

Setup (own virtualenv; RecBole 1.2.1 needs numpy 1.x: its Config aliases `np.float_`, gone in numpy 2,
and pandas 3 is untested with it, so both are pinned back):

    python3 -m venv .venv-recbole
    .venv-recbole/bin/pip install torch==2.13.0 recbole==1.2.1
    .venv-recbole/bin/pip install "numpy==1.26.4" "pandas==2.2.3"

Two further incompatibilities are worked around here, not by pinning: `recbole.quick_start` imports
ray, which needs `pkg_resources` (removed from setuptools 84), so the script wires RecBole's pieces
itself (Config, create_dataset, data_preparation, get_model, get_trainer) the way `run_recbole` does;
and `torch.load` defaults to weights_only=True since torch 2.6, which cannot unpickle RecBole's
checkpoint (it holds the Config), so the best checkpoint is loaded here with weights_only=False.
Tensorboard (hard-wired in RecBole's Trainer) is replaced by a no-op writer; RecBole's log file goes
to WORK/log/, nothing is printed to the console but warnings and this script's output.

    .venv-recbole/bin/python scripts/recbole_peer.py --model SASRec --seed 0 --threads 1 --json
    .venv-recbole/bin/python scripts/recbole_peer.py --model NeuMF --seed 0 --threads 1 --json

Protocol. The split file is handed to RecBole as benchmark atomic files (`benchmark_filename:
[train, valid, test]`, i.e. WORK/peer/peer.{train,valid,test}.inter); with them RecBole skips its own
filtering, ordering and splitting (`eval_args.split` is ignored) and uses the three files as the three
phases. Ranking is full (`eval_args.mode: full`), metrics NDCG@10 and Hit@10, early stopping on
validation NDCG@10. The run asserts the points below on every user before training (`--show N` prints
N users' decoded inputs):

* NeuMF (general model): train file = every training interaction, valid/test file = the one
  validation/test item per user. RecBole's FullSortEvalDataLoader masks "history" = items the user has
  in all phases up to the evaluated one minus the evaluated positives: at validation the training
  items, at test the training items AND the validation item. That is llmrec's protocol as is.
* SASRec (sequential model): with benchmark files RecBole does no data augmentation; each row must
  carry its own input sequence (`item_id_list:token_seq`, remapped jointly with item_id through
  `alias_of_item_id`). The files are written as RecBole's own augmentation would make them: train =
  one row per training prefix (train[:t] -> train[t]); valid = train -> valid item; test = train +
  valid item -> test item; each list cut to the last MAX_ITEM_LIST_LENGTH = 50 items. RecBole's own
  full ranking for sequential models masks NOTHING (its loader returns no history for them), unlike
  llmrec's evaluation, which ranks only items outside the user's history. By default
  (`--seq-mask history`) the validation/test loaders are given that history (training items; for test
  also the validation item), so early stopping and the test metrics follow llmrec's protocol; the
  test metrics without the mask (RecBole's native protocol) are reported too
  (`test_ndcg10_unmasked`, `test_hr10_unmasked`). `--seq-mask none` is RecBole's protocol throughout
  (valid and test unmasked; the flag has no effect on NeuMF).

Hyperparameters: RecBole's model defaults (SASRec: hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5,
max_seq_length 50, CE loss over all items; NeuMF: 64/64 embeddings, MLP [128, 64], dropout 0.1, BCE
with 1 uniform negative per positive), Adam lr 1e-3, train_batch_size 256 (SASRec) / 2048 (NeuMF),
stopping_step 10, at most --epochs epochs. fit_seconds is the wall time of trainer.fit (training plus
the per-epoch validation), excluding imports and dataset building. RecBole ranks with torch.topk, so
exact score ties are broken arbitrarily (llmrec uses the mean rank); with float scores this is moot.
RecBole's early stopping counts a tie with the best as a gain and stops after stopping_step + 1
evaluations without one; best_epoch is 1-based. Without --work the temp dir is removed after a
successful run (kept, with RecBole's log, on a failure).

Cost: SASRec runs the full 50-step transformer once per training prefix (97,171 rows per epoch on
ML-100K) and took ~300 s per epoch with 1 thread on the shared 2-core machine (NeuMF: ~7 s per epoch
including validation), so an uncapped SASRec run (early stopping, up to 200 epochs) takes hours there.

Checked (seed 0): the asserts above pass; re-scoring the saved best checkpoints by hand (all items,
history masked from the split file, rank of the test item) gave exactly RecBole's test NDCG@10 /
HR@10, for NeuMF and for SASRec with and without the mask.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAME = "peer"
MAX_LEN = 50
User = tuple[str, list[str], list[float]]  # (user_id, items in time order, their timestamps)


def read_split(path: Path) -> list[User]:
    """The split's users (meta line skipped): items in time order and their timestamps."""
    users = []
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            if "meta" in row:
                continue
            if len(row["items"]) < 3:
                raise ValueError(f"user {row['user_id']}: fewer than 3 items, no train/valid/test")
            stamps = row.get("timestamps") or list(range(len(row["items"])))
            users.append((str(row["user_id"]), [str(i) for i in row["items"]], [float(t) for t in stamps]))
    return users


def write_benchmark(users: list[User], folder: Path, sequential: bool) -> None:
    """peer.{train,valid,test}.inter: general = one row per interaction; sequential = one row per
    (input sequence, next item), as RecBole's augmentation would build it."""
    folder.mkdir(parents=True, exist_ok=True)
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float\n" if sequential \
        else "user_id:token\titem_id:token\ttimestamp:float\n"
    files = {p: (folder / f"{NAME}.{p}.inter").open("w") for p in ("train", "valid", "test")}
    try:
        for f in files.values():
            f.write(head)
        for user, items, stamps in users:
            n_train = len(items) - 2
            for t in range(1 if sequential else 0, len(items)):
                phase = "train" if t < n_train else "valid" if t == n_train else "test"
                seq = f"{' '.join(items[max(0, t - MAX_LEN):t])}\t" if sequential else ""
                files[phase].write(f"{user}\t{seq}{items[t]}\t{stamps[t]}\n")
    finally:
        for f in files.values():
            f.close()


def check_protocol(dataset: Any, loaders: tuple[Any, Any, Any], users: list[User], sequential: bool,
                   show: int) -> dict[str, dict[int, Any]]:
    """Assert, for every user and decoded back to the split's ids, that RecBole trains on the training
    items only and evaluates exactly the split's valid/test item: SASRec's item_id_list is the right
    prefix (train[:t] in training, train at validation, train + valid at test); NeuMF's masked history is
    train (valid) / train + valid (test). Returns, for SASRec, the (remapped) history to mask per phase."""
    import torch

    item_tok, user_tok = dataset.field2id_token["item_id"], dataset.field2id_token["user_id"]
    item_id, user_id = dataset.field2token_id["item_id"], dataset.field2token_id["user_id"]
    truth = {u: items for u, items, _ in users}
    train = loaders[0]._dataset.inter_feat
    if sequential:  # one row per training prefix, in file order
        pos = {u: 1 for u in truth}
        seqs, lens = train["item_id_list"].numpy(), train["item_length"].numpy()
        for u, i, seq, n in zip(user_tok[train["user_id"].numpy()], item_tok[train["item_id"].numpy()], seqs, lens):
            items, t = truth[u], pos[u]
            assert list(item_tok[seq[:n]]) == items[:t][-MAX_LEN:] and i == items[t], ("train", u, t)
            pos[u] += 1
        assert all(pos[u] == len(items) - 2 for u, items in truth.items()), "train rows"
    else:
        pairs = set(zip(user_tok[train["user_id"].numpy()], item_tok[train["item_id"].numpy()]))
        assert len(train) == len(pairs) and pairs == {(u, i) for u, it in truth.items() for i in it[:-2]}, "train"
    history: dict[str, dict[int, Any]] = {}
    for phase, loader, cut in (("valid", loaders[1], 2), ("test", loaders[2], 1)):
        if sequential:
            feat = loader._dataset.inter_feat
            uids, targets = user_tok[feat["user_id"].numpy()], item_tok[feat["item_id"].numpy()]
            seqs, lens = feat["item_id_list"].numpy(), feat["item_length"].numpy()
            assert sorted(uids) == sorted(truth), phase
            for r, (u, seq, n) in enumerate(zip(uids, seqs, lens)):
                items, fed = truth[u], list(item_tok[seq[:n]])
                assert fed == items[:-cut][-MAX_LEN:] and targets[r] == items[-cut], (phase, u)
                if r < show:
                    print(f"[{phase}] user {u}: item_id_list = last {n} of {len(items) - cut} items, ends "
                          f"{fed[-4:]} -> target {targets[r]}; split: {len(items) - 2} train, ends "
                          f"{items[:-2][-4:]}, valid {items[-2]}, test {items[-1]}", file=sys.stderr)
            history[phase] = {int(user_id[u]): torch.tensor(sorted(item_id[i] for i in set(s[:-cut]) - {s[-cut]}),
                                                 dtype=torch.int64)
                              for u, s in truth.items()}
        else:
            assert len(loader.uid_list) == len(truth), phase
            for n, uid in enumerate(loader.uid_list.tolist()):
                u = user_tok[uid]
                items, masked = truth[u], set(item_tok[loader.uid2history_item[uid].numpy()])
                assert masked == set(items[:-cut]) - {items[-cut]}, (phase, u)
                assert list(item_tok[loader.uid2positive_item[uid].numpy()]) == [items[-cut]], (phase, u)
                if n < show:
                    print(f"[{phase}] user {u}: {len(masked)} items masked (train {len(items) - 2}; "
                          f"valid item {items[-2]} masked: {items[-2] in masked}) -> target {items[-cut]}",
                          file=sys.stderr)
    return history


class NullWriter:
    """Stands in for RecBole's tensorboard SummaryWriter: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", type=Path, default=ROOT / "runs" / "ml-100k" / "split.jsonl")
    ap.add_argument("--model", choices=["SASRec", "NeuMF"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=200, help="epoch cap (early stopping on valid NDCG@10)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a fresh temp dir)")
    ap.add_argument("--seq-mask", choices=["history", "none"], default="history",
                    help="SASRec: mask the user's history in valid/test ranking (llmrec) or not (RecBole)")
    ap.add_argument("--show", type=int, default=0, help="print the decoded eval inputs of N users (stderr)")
    ap.add_argument("--json", action="store_true", help="print one JSON line with the results at the end")
    args = ap.parse_args()

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    split_path = args.split.resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="recbole_peer_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(work)  # RecBole writes ./log/ relative to the working directory

    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # pandas 2.2 / torch.amp notices from RecBole
    torch.set_num_threads(args.threads)
    import recbole.trainer.trainer as recbole_trainer
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.dataloader import FullSortEvalDataLoader
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    recbole_trainer.get_tensorboard = lambda logger: NullWriter()

    class MaskedSeqEvalLoader(FullSortEvalDataLoader):
        """Sequential full-sort loader that also returns the user's history items to mask."""

        def __init__(self, loader: FullSortEvalDataLoader, history: dict[int, torch.Tensor]) -> None:
            self.history = history
            super().__init__(loader.config, loader._dataset, loader._sampler, shuffle=False)

        def collate_fn(self, index):  # type: ignore[override]
            inter, _, pos_u, pos_i = super().collate_fn(index)
            hist = [self.history[int(u)] for u in inter[self.uid_field]]
            rows = torch.cat([torch.full_like(h, r) for r, h in enumerate(hist)])
            return inter, (rows, torch.cat(hist)), pos_u, pos_i

    users = read_split(split_path)
    sequential = args.model == "SASRec"
    write_benchmark(users, work / NAME, sequential)
    config_dict: dict[str, Any] = {
        "data_path": str(work), "checkpoint_dir": str(work / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id", "timestamp"] + (["item_id_list"] if sequential else [])},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Hit"], "topk": [10], "valid_metric": "NDCG@10",
        "epochs": args.epochs, "stopping_step": 10, "learning_rate": 1e-3, "eval_step": 1,
        "seed": args.seed, "reproducibility": True, "worker": 0,
        "use_gpu": False, "gpu_id": "", "device": "cpu",
        "show_progress": False, "state": "INFO", "log_wandb": False, "metric_decimal_place": 6,
    }
    if sequential:
        config_dict.update({"train_batch_size": 256, "MAX_ITEM_LIST_LENGTH": MAX_LEN,
                            "alias_of_item_id": ["item_id_list"], "train_neg_sample_args": None,
                            "loss_type": "CE", "eval_batch_size": 1024})
    else:  # eval_batch_size counts (user, item) pairs: ~128 users of 1683 items per batch
        config_dict.update({"train_batch_size": 2048, "eval_batch_size": 128 * 1683})

    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config would also parse our --key=value args
    config = Config(model=args.model, dataset=NAME, config_dict=config_dict)
    sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    for handler in logging.getLogger().handlers:  # console: warnings only; the log file keeps INFO
        if not hasattr(handler, "baseFilename"):
            handler.setLevel(logging.WARNING)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    history = check_protocol(dataset, (train_data, valid_data, test_data), users, sequential, args.show)
    unmasked_test = test_data
    if sequential and args.seq_mask == "history":
        valid_data = MaskedSeqEvalLoader(valid_data, history["valid"])
        test_data = MaskedSeqEvalLoader(test_data, history["test"])

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best = {"epoch": 0, "epochs_run": 0}

    def on_epoch(epoch: int, score: float) -> None:
        best["epochs_run"] = epoch + 1
        if trainer.cur_step == 0:  # RecBole's early_stopping just took this epoch as the best
            best["epoch"] = epoch + 1

    started = time.perf_counter()
    best_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=on_epoch)
    fit_seconds = time.perf_counter() - started

    ckpt = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))
    test = trainer.evaluate(test_data, load_best_model=False)
    out: dict[str, Any] = {
        "model": args.model, "seed": args.seed, "fit_seconds": round(fit_seconds, 2),
        "test_ndcg10": float(test["ndcg@10"]), "test_hr10": float(test["hit@10"]),
        "valid_ndcg10": float(best_score), "best_epoch": best["epoch"], "epochs_run": best["epochs_run"],
        "users": len(test_data.uid_list) if not sequential else len(test_data._dataset),
        "items": int(dataset.item_num - 1), "threads": args.threads,
    }
    if sequential:
        if args.seq_mask == "history":
            raw = trainer.evaluate(unmasked_test, load_best_model=False)
            out.update(test_ndcg10_unmasked=float(raw["ndcg@10"]), test_hr10_unmasked=float(raw["hit@10"]))
            out["note"] = ("history (train items; +valid item at test) masked in valid/test ranking by this "
                           "script, as in llmrec; RecBole's sequential full ranking masks nothing (*_unmasked)")
        else:
            out["note"] = "RecBole's sequential full ranking: history items not masked"
    else:
        out["note"] = "RecBole masks train items at valid, train items + valid item at test"
    os.chdir(cwd)
    if args.work is None:  # a temp dir of our own: removed after a successful run (kept on failure)
        logging.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    else:
        out["work"] = str(work)
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
