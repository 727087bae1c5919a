"""The shared loop of the trained baselines: Adam, validation NDCG@10 after each epoch, best state kept.

Randomness (initialisation, dropout, sampling) comes from the model's seed alone: the loop runs
inside `seeded(seed)`, which forks torch's generator so that global state is neither read nor
changed, and negatives come from a `numpy.random.Generator` seeded the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Self

import numpy as np
import torch

from llmrec.baselines import TrainData, full_valid_ndcg10


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's CPU generator set to `seed` inside, restored outside."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class EpochBar:
    """The progress bar of a fit: one step per epoch, the validation NDCG@10 of the last epoch and
    the best so far beside it (on stderr, like the ranking bars)."""

    def __init__(self, name: str, epochs: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epochs, desc=f"fit {name}", unit="epoch", dynamic_ncols=True)

    def update(self, ndcg: float, best: float) -> None:
        self.bar.set_postfix_str(f"valid NDCG@10 {ndcg:.4f}, best {best:.4f}", refresh=False)
        self.bar.update(1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def fit_early_stopped(model, data: TrainData, module: torch.nn.Module,
                      epoch_losses: Callable[[np.random.Generator], Iterator[torch.Tensor]], *, epochs: int,
                      learning_rate: float, patience: int, seed: int) -> None:
    """Train `module` (whose parameters `model.score_all` reads) with Adam, one validation per epoch.

    Keeps the state with the best validation NDCG@10 (full ranking over unseen items), stops after
    `patience` epochs without a gain, and leaves the best state loaded. Sets `model.history`
    (validation NDCG@10 per epoch) and `model.best_epoch`.
    """
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(module.parameters(), lr=learning_rate)
    best, best_state, bad = -1.0, None, 0
    model.history, model.best_epoch = [], 0
    with EpochBar(model.name, epochs) as bar:
        for epoch in range(1, epochs + 1):
            module.train()
            for loss in epoch_losses(rng):
                opt.zero_grad()
                loss.backward()
                opt.step()
            module.eval()
            ndcg = full_valid_ndcg10(model, data)
            model.history.append(ndcg)
            if ndcg > best:
                best, bad, model.best_epoch = ndcg, 0, epoch
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                bad += 1
            bar.update(ndcg, best)
            if bad >= patience:
                break
    assert best_state is not None
    module.load_state_dict(best_state)
    module.eval()


def sample_negatives(rng: np.random.Generator, users: np.ndarray, seen: np.ndarray, n_items: int,
                     k: int = 1) -> np.ndarray:
    """`k` uniform negatives per user row (shape (len(users), k)), none of them a training item of
    that user (the usual BPR / NCF sampling; resampled until clean)."""
    j = rng.integers(0, n_items, (len(users), k))
    bad = seen[users[:, None], j]
    while bad.any():
        j[bad] = rng.integers(0, n_items, int(bad.sum()))
        bad = seen[users[:, None], j]
    return j


class _Stop(Exception):
    """Raised from an `implicit` solver's per-iteration callback to end training early."""


def fit_implicit_early_stopped(model, data: TrainData, solver, *, epochs: int, patience: int,
                               min_epochs: int = 0) -> None:
    """Fit an `implicit` solver (ALS, BPR) with validation NDCG@10 after each iteration, through its
    callback: keeps the best iteration's factors in `model.user_factors` / `model.item_factors`,
    stops after `patience` iterations without a gain (never before `min_epochs`), and sets
    `model.history` and `model.best_epoch`. `model.score_all` must read those two arrays."""
    best, bad, kept = -1.0, 0, None
    model.history, model.best_epoch = [], 0

    def after_iteration(iteration: int, *_) -> None:
        nonlocal best, bad, kept
        model.user_factors, model.item_factors = solver.user_factors, solver.item_factors
        ndcg = full_valid_ndcg10(model, data)
        model.history.append(ndcg)
        if ndcg > best:
            best, bad, model.best_epoch = ndcg, 0, iteration + 1
            kept = (solver.user_factors.copy(), solver.item_factors.copy())
        else:
            bad += 1
        bar.update(ndcg, best)
        if bad >= patience and iteration + 1 >= min_epochs:
            raise _Stop

    with EpochBar(model.name, epochs) as bar:
        try:
            solver.fit(data.binary.astype(np.float32), show_progress=False, callback=after_iteration)
        except _Stop:
            pass
    assert kept is not None
    model.user_factors, model.item_factors = kept
