"""The fine-tuning loop: accelerate, answer-only loss, periodic validation NDCG@10, early stopping.

Runs unchanged on one CPU, one GPU (bf16) or several GPUs under `accelerate launch`. Every
validation saves a resumable checkpoint (`checkpoint/`: adapter weights, optimizer and scheduler
state, step counter; the frozen base model is not copied) and, when validation NDCG@10 improves,
the adapter (`best/`, a standard peft folder). A restarted run loads the checkpoint, skips the
batches already seen and carries on. The checkpoint is written to a temporary folder and renamed,
so an interruption while saving leaves the previous one intact. The checkpoint also records the
settings that shaped it (`settings.json`), and a resume under different settings is refused.
A model with collaborative tokens (`llmrec.models.cf`) saves and resumes its projector with the
adapter, in the same folders. With `curriculum`, each example is its text-only twin's prompt or the
hybrid one by a draw that favours the hybrid linearly over the run (`Curriculum`).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmrec.errors import ConfigError
from llmrec.train.examples import IGNORE


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    best_ndcg: float = -1.0
    best_step: int = 0
    bad_evals: int = 0
    curve: list[dict] = field(default_factory=list)  # step, train loss, valid loss, valid NDCG@10

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


class Curriculum(torch.utils.data.Dataset):
    """LLaRA's curriculum over one epoch's order of a dataset with `text_*` twin columns.

    The example at position k of the run (`start` + index) is the hybrid prompt with probability
    k / `span` (the run's examples), else its text-only twin. The draw depends only on (seed, k),
    so a resumed run sees the same prompts.
    """

    def __init__(self, data, start: int, span: int, seed: int) -> None:
        self.data, self.start, self.span, self.seed = data, start, max(span, 1), seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, k: int) -> dict:
        row = self.data[k]
        at = self.start + k
        if np.random.default_rng([self.seed, at]).random() >= at / self.span:
            row = {**row, "input_ids": row["text_input_ids"], "labels": row["text_labels"]}
        return {c: v for c, v in row.items() if not c.startswith("text_")}


def collate(pad_id: int):
    def fn(rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[k, :n] = torch.tensor(r["input_ids"])
            labels[k, :n] = torch.tensor(r["labels"])
            mask[k, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if "choices" in rows[0]:  # the choice loss's columns (see `choice_loss`)
            batch.update(choices=torch.tensor([r["choices"] for r in rows]),
                         choice=torch.tensor([r["choice"] for r in rows]),
                         offsets=torch.tensor([r["offsets"] for r in rows], dtype=torch.float32))
        return batch

    return fn


def pack(batch: dict[str, torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """A padded batch's examples packed into fewer rows, each example attending only to itself.

    Examples go into rows as wide as the longest one, longest first, each into the first row with
    room (first-fit decreasing). Positions restart at 0 for every example and a block-diagonal
    causal mask (`allowed`, rows x width x width) keeps attention within it, so every token sees
    exactly what it sees padded: the loss over the answer tokens is the padded batch's. At a seam
    the previous example's last token "predicts" the next one's first, a prompt token without a
    label, so no loss crosses examples.
    """
    lengths = batch["attention_mask"].sum(1).tolist()
    width = max(lengths)
    rows: list[list[int]] = []  # example indices per row
    room: list[int] = []
    for k in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        at = next((r for r, free in enumerate(room) if free >= lengths[k]), None)
        if at is None:
            rows.append([])
            room.append(width)
            at = len(rows) - 1
        rows[at].append(k)
        room[at] -= lengths[k]
    on = {"device": batch["input_ids"].device}  # the batch's device (a GPU's, once accelerate moved it)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, **on)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long, **on)
    positions = torch.zeros((len(rows), width), dtype=torch.long, **on)
    allowed = torch.zeros((len(rows), width, width), dtype=torch.bool, **on)
    causal = torch.ones((width, width), dtype=torch.bool, **on).tril()
    for r, members in enumerate(rows):
        start = 0
        for k in members:
            n = lengths[k]
            ids[r, start:start + n] = batch["input_ids"][k, :n]
            labels[r, start:start + n] = batch["labels"][k, :n]
            positions[r, start:start + n] = torch.arange(n, **on)
            allowed[r, start:start + n, start:start + n] = causal[:n, :n]
            start += n
        allowed[r, start:, start:] = causal[: width - start, : width - start]  # the row's tail: pad sees itself
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "allowed": allowed}


def grouped_order(lengths: list[int], batch_size: int, seed: int, span: int = 50) -> list[int]:
    """An epoch's example order whose consecutive batches hold examples of similar length.

    A seeded shuffle is cut into windows of `span` batches; each window is sorted by length and cut
    into batches, and the batches of the whole epoch are shuffled (so long ones do not all come
    first; the one short batch goes last). Examples stay as random as the window allows; padding
    falls to almost nothing.
    """
    rng = np.random.default_rng([seed, 0x67726F75])
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * span):
        window = sorted(order[start:start + batch_size * span].tolist(), key=lambda k: lengths[k])
        batches += [window[k:k + batch_size] for k in range(0, len(window), batch_size)]
    shuffled = sorted((batches[j] for j in rng.permutation(len(batches))), key=lambda b: len(b) < batch_size)
    return [k for b in shuffled for k in b]  # a short batch last: the loader cuts every batch_size examples


def on_cpu() -> bool:
    """Whether accelerate should run on the CPU: asked for (ACCELERATE_USE_CPU, `accelerate launch
    --cpu`), or several processes (torchrun) on a machine without CUDA, which then train data
    parallel over gloo."""
    import os

    asked = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return asked or (int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available())


def precision(mixed_precision: str) -> str:
    """`train.mixed_precision` as accelerate reads it; fp16 without a CUDA GPU is refused."""
    cuda = torch.cuda.is_available() and not on_cpu()
    if mixed_precision == "auto":
        return "bf16" if cuda else "no"
    if mixed_precision == "fp16" and not cuda:
        raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU (fp16 autocast with loss scaling); on a CPU "
                          "use bf16 or no")
    return mixed_precision


def sharded_weights() -> bool:
    """Whether the model's weights are split across processes (FSDP, DeepSpeed): then every process
    must run the same forward passes together, and weights are gathered to be saved."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    return PartialState().distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def process_state():
    """accelerate's process state (one process, or this one of several), set up as `train` runs it."""
    from accelerate import PartialState

    return PartialState(cpu=on_cpu())


def lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The answer tokens' cross-entropy over the vocabulary (labels are -100 elsewhere), on a padded
    batch or a packed one (`pack`: its block-diagonal mask in the dtype attention computes in)."""
    if "allowed" not in batch:
        return model(**batch).loss
    allowed = batch["allowed"]
    kind = allowed.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else \
        next(p.dtype for p in model.parameters() if p.is_floating_point())
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    return model(input_ids=batch["input_ids"], attention_mask=mask[:, None], position_ids=batch["position_ids"],
                 labels=batch["labels"]).loss


def choice_loss(alpha: torch.Tensor):
    """Softmax over the answer choices (letters, or Yes/No) with the collaborative residual added:
    logit of choice j at the answer position + alpha * offset_j, cross-entropy on the right one.
    Ranking reads the same sum (`LLMRanker.score`), so training optimises what is ranked."""

    def fn(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        shift = logits.shape[1] - batch["input_ids"].shape[1]  # a soft prompt's virtual tokens come first
        at = (batch["labels"] != IGNORE).int().argmax(1) - 1 + shift  # the position that predicts the answer
        rows = logits[torch.arange(len(at)), at]
        scores = rows.gather(1, batch["choices"]).float() + alpha * batch["offsets"]
        return torch.nn.functional.cross_entropy(scores, batch["choice"])

    return fn


@torch.no_grad()
def mean_loss(model, loader, accelerator, loss_fn=lm_loss, packing: bool = False, pad_id: int = 0) -> float:
    """Mean answer-token loss over the whole validation loader (every process's share, summed)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        batch = pack(batch, pad_id) if packing else batch
        n = int((batch["labels"] != IGNORE).sum())
        total += float(loss_fn(model, batch)) * n
        count += n
    model.train()
    sums = accelerator.reduce(torch.tensor([total, count], dtype=torch.float64, device=accelerator.device), "sum")
    return float(sums[0] / max(float(sums[1]), 1.0))


def global_weight(batch: dict[str, torch.Tensor], accelerator) -> torch.Tensor | float:
    """The factor that turns this process's mean loss into its share of the global batch's mean.

    Under data parallelism each process averages over its own answer tokens and the gradients are
    then averaged over processes, which weighs a token in a short shard more than one in a long
    shard. Scaling by (local tokens x processes / global tokens) makes the update the single-process
    one: the mean over every answer token of the global batch. 1 in a single process.
    """
    if accelerator.num_processes == 1:
        return 1.0
    local = (batch["labels"] != IGNORE).sum().to(torch.float64)
    total = accelerator.reduce(local.clone(), "sum")
    return (local * accelerator.num_processes / total.clamp(min=1)).float()


def check_resumable(out: Path, settings: dict) -> None:
    """Refuse to resume `out/checkpoint` under settings other than those that shaped it.

    Resuming would otherwise carry on with the checkpoint's optimizer and scheduler (its learning
    rate, step count, data) while the run's saved config claims the new values. Every key counts:
    the caller leaves out only what cannot change the weights. A checkpoint without recorded
    settings cannot be checked and is refused too. Nothing to resume passes.
    """
    ckpt = out / "checkpoint"
    if not (ckpt / "state.json").is_file():
        return
    how = f"use a new train.out, or delete {out} to start over"
    if not (ckpt / "settings.json").is_file():
        raise ConfigError(f"cannot resume {ckpt}: it records no training settings to compare with; {how}")
    old = json.loads((ckpt / "settings.json").read_text())
    new = json.loads(json.dumps(settings))  # tuples as lists, as saved

    def show(values: dict, key: str) -> str:
        return repr(values[key]) if key in values else "(absent)"

    diffs = [f"{k}: {show(old, k)} -> {show(new, k)}"
             for k in sorted(old.keys() | new.keys()) if k not in old or k not in new or old[k] != new[k]]
    if diffs:
        raise ConfigError(f"cannot resume {ckpt}: settings differ from the run that wrote it "
                          f"({'; '.join(diffs)}); {how}")


def save_adapter(model, folder: Path, state_dict: dict | None = None) -> None:
    """The peft adapter and, for collaborative tokens, the projector beside it. `state_dict`: the
    model's full weights gathered from sharded processes (FSDP, DeepSpeed ZeRO-3)."""
    from llmrec.models.cf import slots_of

    model.save_pretrained(folder, save_embedding_layers=False,  # new token rows travel as trainable tokens
                          **({"state_dict": state_dict} if state_dict is not None else {}))
    table = slots_of(model)
    if table is not None:
        table.save(folder)


def load_adapter_weights(model, folder: Path, device: str) -> None:
    """Load what `save_adapter` wrote into a model of the same shape (a resume)."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    from llmrec.models.cf import WEIGHTS, slots_of

    set_peft_model_state_dict(model, load_peft_weights(str(folder), device=device))
    table = slots_of(model)
    if table is not None:
        from safetensors.torch import load_file

        table.projector.load_state_dict(load_file(str(folder / WEIGHTS), device=device))


def save_checkpoint(ckpt: Path, model, opt, sched, state: TrainState, settings: dict | None = None,
                    state_dict: dict | None = None) -> None:
    """Adapter + optimizer + scheduler + counters (+ the settings behind them), swapped in atomically."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(model, tmp / "adapter", state_dict)
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp / "optim.pt")
    state.save(tmp / "state.json")
    if settings is not None:
        (tmp / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True))
    old = ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


# files of a training folder copied beside the best adapter: what `rank --adapter` reads with it
TRAVEL = ("llmrec.toml", "template.json", "codes.json", "sid.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt")


def resume(ckpt: Path, accelerator, model, opt, sched, settings: dict | None, log=print) -> TrainState:
    """The checkpoint's adapter, optimizer and scheduler state loaded in place; its training state."""
    if sharded_weights():
        raise ConfigError(f"cannot resume {ckpt} under {accelerator.distributed_type.value}: its optimizer state is "
                          "sharded across the processes and the checkpoint holds the first process's only; "
                          "resume with plain data parallelism (accelerate launch --multi_gpu) or use a new train.out")
    if settings is not None:
        check_resumable(ckpt.parent, settings)
    device = accelerator.device  # "cpu:0" under multi-CPU data parallelism, which the loaders refuse
    device = "cpu" if device.type == "cpu" else str(device)
    load_adapter_weights(accelerator.unwrap_model(model), ckpt / "adapter", device)
    saved = torch.load(ckpt / "optim.pt", map_location=device, weights_only=False)
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    state = TrainState.load(ckpt / "state.json")
    log(f"resuming from step {state.step} (best NDCG@10 {state.best_ndcg:.4f} at step {state.best_step})")
    return state


def evaluator(model, valid_loader, accelerator, loss_fn, validate: Callable[[object], float], state: TrainState,
              out: Path, opt, sched, settings: dict | None, patience: int, log=print, packing: bool = False,
              pad_id: int = 0) -> Callable[[float | None], bool]:
    """`evaluate(train_loss)`: validate, checkpoint, keep the best adapter in `out/best`; True when
    patience is exhausted. Only the main process writes."""

    def evaluate(train_loss: float | None) -> bool:
        v_loss = mean_loss(model, valid_loader, accelerator, loss_fn, packing, pad_id)
        ndcg = validate(accelerator.unwrap_model(model))
        state.curve.append({"step": state.step, "train_loss": None if train_loss is None else round(train_loss, 5),
                            "valid_loss": round(v_loss, 5), "valid_ndcg10": round(ndcg, 5),
                            **({"valid_users": validate.scored} if hasattr(validate, "scored") else {})})
        # sharded weights (FSDP, ZeRO-3) are gathered by every process together; replicated ones need not be
        gathered = accelerator.get_state_dict(model) if sharded_weights() else None
        if ndcg > state.best_ndcg:
            state.best_ndcg, state.best_step, state.bad_evals = ndcg, state.step, 0
            if accelerator.is_main_process:
                save_adapter(accelerator.unwrap_model(model), out / "best", gathered)
                for name in TRAVEL:  # the run's config, template (and semantic IDs, tokenizer) travel along
                    if (out / name).is_file():
                        shutil.copyfile(out / name, out / "best" / name)
        else:
            state.bad_evals += 1
        if accelerator.is_main_process:
            save_checkpoint(out / "checkpoint", accelerator.unwrap_model(model), opt, sched, state, settings, gathered)
        accelerator.wait_for_everyone()
        shown = "-" if train_loss is None else f"{train_loss:.4f}"
        log(f"step {state.step}: train loss {shown}, valid loss {v_loss:.4f}, valid NDCG@10 {ndcg:.4f}")
        return state.bad_evals >= patience

    return evaluate


def train(model, train_ds, valid_ds, *, out: Path, pad_id: int, batch_size: int, gradient_accumulation: int,
          learning_rate: float, epochs: int, max_steps: int, warmup_ratio: float, scheduler: str,
          eval_every: int, patience: int, seed: int, validate: Callable[[object], float], log=print,
          settings: dict | None = None, param_groups: list[dict] | None = None, loss_fn=lm_loss,
          curriculum: bool = False, mixed_precision: str = "auto", batches: str = "padded") -> TrainState:
    """Train `model` (a peft model) in place; returns the state with the learning curve.

    `settings` (JSON-able) is recorded in each checkpoint and must match on resume.
    `param_groups` (AdamW groups, e.g. a projector with its own rate) replaces the default of every
    trainable parameter at `learning_rate`. `loss_fn(model, batch)` is the loss (default: `lm_loss`).
    `curriculum` draws each example from its text-only twin or hybrid prompt (`Curriculum`).
    `mixed_precision` is accelerate's autocast: "auto" is bf16 on a CUDA GPU and none elsewhere.
    `batches`: "padded" (random batches, padded to their longest), "grouped" (batches of similar
    lengths, `grouped_order`) or "packed" (each process's share of a batch packed into fewer rows,
    `pack`; token loss only: the same loss as padded).
    """
    from accelerate.utils import set_seed
    from tqdm import tqdm
    from transformers import get_scheduler

    set_seed(seed)
    packing = batches == "packed"
    accelerator = make_accelerator(gradient_accumulation, mixed_precision, batch_size)
    if not accelerator.is_main_process:
        log = quiet  # one process reports
    if curriculum and "text_input_ids" not in train_ds.column_names:
        raise ConfigError("a curriculum needs the text-only twin's examples (text_input_ids)")
    steps_per_epoch = math.ceil(math.ceil(len(train_ds) / batch_size) / gradient_accumulation)
    total = max_steps or steps_per_epoch * epochs
    lengths = [len(x) for x in train_ds["input_ids"]] if batches == "grouped" else None
    span = total * batch_size * gradient_accumulation if curriculum else 0

    valid_loader = torch.utils.data.DataLoader(valid_ds, batch_size=batch_size, collate_fn=collate(pad_id))
    opt = torch.optim.AdamW(param_groups or [p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    sched = get_scheduler(scheduler, opt, num_warmup_steps=int(warmup_ratio * total), num_training_steps=total)
    model, opt, valid_loader, sched = accelerator.prepare(model, opt, valid_loader, sched)

    ckpt = out / "checkpoint"
    state = resume(ckpt, accelerator, model, opt, sched, settings, log) if (ckpt / "state.json").is_file() \
        else TrainState()
    evaluate = evaluator(model, valid_loader, accelerator, loss_fn, validate, state, out, opt, sched, settings,
                         patience, log, packing, pad_id)

    if state.step == 0:
        evaluate(None)  # the zero-shot starting point (no training loss yet) of the learning curve
    model.train()
    started, seen, tokens, slots = time.time(), 0, 0, 0
    running, n_running = 0.0, 0
    stop = state.bad_evals >= patience or state.step >= total
    with tqdm(total=total, initial=state.step, unit="step", desc="train", dynamic_ncols=True,
              disable=not accelerator.is_local_main_process) as bar:
        epoch = state.step // steps_per_epoch
        while not stop and state.step < total:
            skip = (state.step - epoch * steps_per_epoch) * gradient_accumulation
            loader = accelerator.prepare(epoch_loader(train_ds, epoch, batch_size, seed, pad_id, lengths, span))
            for batch in accelerator.skip_first_batches(loader, skip) if skip else loader:
                tokens += int(batch["attention_mask"].sum())
                seen += batch["input_ids"].shape[0]  # examples (before packing puts several in a row)
                batch = pack(batch, pad_id) if packing else batch
                slots += batch["input_ids"].numel()
                running += train_step(model, batch, accelerator, opt, sched, loss_fn)
                n_running += 1
                if not accelerator.sync_gradients:
                    continue
                state.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{running / n_running:.4f}", ex_per_s=f"{seen / (time.time() - started):.2f}")
                if state.step % eval_every == 0 or state.step == total:
                    stop = evaluate(running / n_running)
                    running, n_running = 0.0, 0
                if stop or state.step >= total:
                    break
            epoch += 1
    finish(state, accelerator, out, time.time() - started, seen, tokens, slots)
    return state


def epoch_loader(train_ds, epoch: int, batch_size: int, seed: int, pad_id: int, lengths: list[int] | None,
                 curriculum_span: int):
    """One epoch's batches. The order is a pure function of (seed, epoch), so a resumed run sees the
    same batches: a seeded shuffle, or `grouped_order` when `lengths` are given; a curriculum
    (`curriculum_span` > 0: the run's examples) draws each example's text-only or hybrid prompt."""
    data = train_ds.select(grouped_order(lengths, batch_size, seed + epoch)) if lengths is not None \
        else train_ds.shuffle(seed=seed + epoch)
    if curriculum_span:
        data = Curriculum(data, epoch * len(data), curriculum_span, seed)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate(pad_id))


def train_step(model, batch: dict[str, torch.Tensor], accelerator, opt, sched, loss_fn) -> float:
    """One micro-batch forward and backward (an optimizer step when accumulation completes); its loss."""
    with accelerator.accumulate(model):
        loss = loss_fn(model, batch)
        accelerator.backward(loss * global_weight(batch, accelerator))
        opt.step()
        sched.step()
        opt.zero_grad()
    return float(loss.detach())


def make_accelerator(gradient_accumulation: int, mixed_precision: str, batch_size: int):
    """The run's Accelerator. split_batches: `batch_size` is the global batch, split across
    processes, so one process and N take the same optimizer steps (the scheduler counts them once)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    accelerator = Accelerator(gradient_accumulation_steps=gradient_accumulation, cpu=on_cpu(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              mixed_precision=precision(mixed_precision))
    check_global_batch(batch_size, accelerator.num_processes)
    return accelerator


def check_global_batch(batch_size: int, processes: int) -> None:
    """`train.batch_size` is split evenly across the processes, or the run is refused in one line."""
    if batch_size % processes:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch, split across {processes} "
                          f"processes: make it a multiple of {processes}")


def finish(state: TrainState, accelerator, out: Path, elapsed: float, seen: int, tokens: int, slots: int) -> None:
    """The run's throughput over all processes (examples, real tokens, padding share) added to the
    curve, and `train_state.json` written by the first process."""
    elapsed = max(elapsed, 1e-9)
    seen, tokens, slots = (int(x) for x in accelerator.reduce(
        torch.tensor([seen, tokens, slots], device=accelerator.device), "sum"))
    state.curve.append({"examples_per_second": round(seen / elapsed, 3), "wall_seconds": round(elapsed, 1),
                        "tokens_per_second": round(tokens / elapsed, 1),
                        "padding_share": round(1 - tokens / slots, 4) if slots else 0.0,
                        "processes": accelerator.num_processes})
    if accelerator.is_main_process:
        state.save(out / "train_state.json")
    accelerator.wait_for_everyone()


def quiet(*_args, **_kwargs) -> None:
    """The log of every process but the first."""
