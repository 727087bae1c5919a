"""A short real training run on SmolLM2 + ML-100K: validation loss goes down, the best adapter is
saved with its template, `rank --adapter` uses it, and an interrupted run resumes to the same weights."""

import json
from pathlib import Path

import pytest
import torch

from llmrec.config import apply_overrides, from_dict, load_config, to_dict
from llmrec.models.load import resolve_model
from llmrec.prompts.render import load_template
from llmrec.train.examples import build_examples, to_hf_dataset
from tests.conftest import train_cfg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared_valid(tmp_path_factory, ml100k):
    """Prepared out_dir with sampled-20 validation and test candidates, 3-item histories."""
    from llmrec.recipes import prepare

    out = tmp_path_factory.mktemp("train")
    cfg = load_config("scripts/configs/ml100k.toml", [
        f"out_dir={out}", "candidates.kinds=['sampled']", "split.history_len=3",
        "train.template=title/next_item_v1", "train.max_users=40", "train.history_len=3",
        "train.prefixes_per_user=2", "train.valid_users=16", "train.batch_size=4", "train.max_steps=6",
        "train.eval_every=3", "train.learning_rate=1e-3", "train.lora.dropout=0.0", "train.warmup_ratio=0", "train.patience=5"])
    prepare.run(cfg, log=lambda *_: None)
    return cfg


def with_(cfg, *overrides):
    return from_dict(type(cfg), apply_overrides(to_dict(cfg), list(overrides)))


def test_train_then_rank_with_adapter(prepared_valid):
    from llmrec.recipes import rank, train

    logs = []
    res = train.run(prepared_valid, log=logs.append)
    curve = [c for c in res.curve if "valid_loss" in c]
    assert [c["step"] for c in curve] == [0, 3, 6]
    # Validation loss on held-out users' examples (2 users x 2 prefixes) goes down.
    assert curve[-1]["valid_loss"] < curve[0]["valid_loss"] - 0.1
    # Step 0 has no training loss; the saved state is strict JSON and records throughput and time.
    assert curve[0]["train_loss"] is None and curve[-1]["train_loss"] > 0
    saved = json.loads((res.adapter_dir.parent / "train_state.json").read_text(),
                       parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in train_state.json"))
    assert saved["curve"][-1]["examples_per_second"] > 0 and saved["curve"][-1]["wall_seconds"] > 0
    best = res.adapter_dir
    assert (best / "adapter_config.json").is_file() and (best / "adapter_model.safetensors").is_file()
    assert json.loads((best / "template.json").read_text())["template"] == "title/next_item_v1"
    assert round(res.best_ndcg, 5) == max(c["valid_ndcg10"] for c in curve)
    # Training beat zero-shot, so `best/` is a trained adapter (at step 0 LoRA B is zero: no effect).
    assert res.best_step > 0 and res.best_ndcg > curve[0]["valid_ndcg10"]
    # The examples were cached: a second build reads them back.
    again = []
    train.cached_examples(prepared_valid, load_template("title/next_item_v1"), _tok(), _ds(prepared_valid),
                          _split(prepared_valid), 3, train.training_prompt_budget(prepared_valid, resolve_model(
                              prepared_valid.model.name)), again.append)
    assert again and again[0].startswith("training examples from cache")

    cfg = with_(prepared_valid, f"model.adapter={best}", "rank.template=title/next_item_v1", "rank.users=3")
    ranked = rank.run(cfg, log=lambda *_: None)
    assert ranked.run_dir.name.startswith("title-next_item_v1--smollm2-135m-instruct--lora--title")
    zero = rank.run(with_(cfg, "model.adapter=''"), log=lambda *_: None)
    rows = [json.loads(line) for line in (ranked.run_dir / "ranks.jsonl").read_text().splitlines()]
    base = [json.loads(line) for line in (zero.run_dir / "ranks.jsonl").read_text().splitlines()]
    assert [r["user_id"] for r in rows] == [r["user_id"] for r in base]
    assert any(r["scores"] != b["scores"] for r, b in zip(rows, base))


def test_train_with_collaborative_tokens_then_rank(prepared_valid, ml100k_vectors, tmp_path):
    """Projector + LoRA on validation targets (the validation-NDCG users held out), saved beside the
    adapter; `rank` loads both and refuses a cf template without them."""
    from llmrec.data.candidates import CandidateSet
    from llmrec.errors import ConfigError
    from llmrec.recipes import rank, train

    cfg = with_(prepared_valid, "train.template=letters/candidates_cf_only_v1", f"train.cf.vectors={ml100k_vectors}",
                "train.draws=2", "train.cf.unknown_rate=0.1", "train.valid_users=8", "train.max_steps=4",
                "train.eval_every=4", f"train.out={tmp_path / 'cf'}")
    logs = []
    res = train.run(cfg, log=logs.append)
    assert any("collaborative tokens: bpr vectors" in line for line in logs)
    valid = Path(cfg.out_dir) / "candidates" / "sampled-20.valid.jsonl"
    held = [c.user_id for c in CandidateSet.load(valid).lists[:8]]
    users = list(_split(cfg).users)[:40]
    assert res.examples == 2 * len(set(users) - set(held))  # one validation target per user, two draws
    curve = [c for c in res.curve if "valid_loss" in c]
    assert curve[-1]["valid_loss"] < curve[0]["valid_loss"] - 0.1
    best = res.adapter_dir
    meta = json.loads((best / "cf.json").read_text())
    assert meta["vectors"] == str((ml100k_vectors / "vectors.npz").resolve()) and meta["placeholder"] == "<empty_output>"
    assert (best / "cf_projector.safetensors").is_file()

    ranked = rank.run(with_(cfg, f"model.adapter={best}", "rank.template=letters/candidates_cf_only_v1",
                            "rank.users=4"), log=lambda *_: None)
    run = json.loads((ranked.run_dir / "run.json").read_text())
    assert ranked.metrics["users"] == 4 and "+" in run["settings"]["adapter_sha256"]  # adapter + projector
    with pytest.raises(ConfigError, match="places collaborative vectors"):
        rank.run(with_(cfg, "rank.template=letters/candidates_cf_only_v1", "rank.users=4"), log=lambda *_: None)
    # `prompts render` shows where the vectors go, with the adapter's slots (and refuses without them)
    from llmrec.errors import TemplateError
    from llmrec.recipes.render import render_for_user

    text, _, _ = render_for_user(with_(cfg, f"model.adapter={best}", "rank.template=letters/candidates_cf_only_v1"), "7")
    assert text.count("<empty_output>") == 3 + 1 + 20  # history, user, candidates
    with pytest.raises(TemplateError, match="places collaborative vectors"):
        render_for_user(with_(cfg, "rank.template=letters/candidates_cf_only_v1"), "7")
    with pytest.raises(ConfigError, match="set train.cf.vectors"):
        train.run(with_(cfg, "train.cf.vectors=''"), log=lambda *_: None)
    with pytest.raises(ConfigError, match="has no | cf slot"):
        train.run(with_(cfg, "train.template=title/next_item_v1"), log=lambda *_: None)
    with pytest.raises(ConfigError, match="merge cannot fold"):
        train.run(with_(cfg, "train.merge=true"), log=lambda *_: None)


@pytest.fixture(scope="module")
def tiny(prepared_valid, tmp_path_factory):
    """A real run cut to one optimizer step on 8 users without NDCG scoring, saved in `<folder>/a`."""
    from llmrec.recipes import train

    folder = tmp_path_factory.mktemp("tiny")
    cfg = with_(prepared_valid, "train.max_users=8", "train.max_steps=1", "train.valid_users=0",
                f"train.out={folder / 'a'}")
    train.run(cfg, log=lambda *_: None)
    return cfg, folder


def checkpoint_weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "checkpoint" / "adapter" / "adapter_model.safetensors"))


def test_same_seed_gives_the_same_adapter(tiny):
    from llmrec.recipes import train

    cfg, folder = tiny
    train.run(with_(cfg, f"train.out={folder / 'b'}"), log=lambda *_: None)
    train.run(with_(cfg, f"train.out={folder / 'c'}", "train.seed=1"), log=lambda *_: None)
    a, b, c = (checkpoint_weights(folder / name) for name in "abc")
    assert len(a) == 2 * 7 * 30 and a.keys() == b.keys() == c.keys()  # A and B of 7 projections x 30 layers
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert all(not torch.equal(a[k], c[k]) for k in a if "lora_A" in k)


def test_resume_with_changed_settings_is_refused(tiny):
    from llmrec.errors import ConfigError
    from llmrec.recipes import train

    cfg, folder = tiny
    out = folder / "a"
    saved = (out / "llmrec.toml").read_text()
    with pytest.raises(ConfigError) as err:
        train.run(with_(cfg, "train.learning_rate=5e-4", "train.max_steps=2"), log=lambda *_: None)
    assert str(err.value) == (f"cannot resume {out / 'checkpoint'}: settings differ from the run that wrote it "
                              f"(train.learning_rate: 0.001 -> 0.0005; train.max_steps: 1 -> 2); "
                              f"use a new train.out, or delete {out} to start over")
    assert (out / "llmrec.toml").read_text() == saved and "learning_rate = 0.001\n" in saved
    # The same settings resume (here: a finished run, so no further step).
    logs = []
    train.run(cfg, log=logs.append)
    assert any(line.startswith("resuming from step 1") for line in logs)


def test_checkpoint_without_settings_is_not_resumed(tmp_path):
    from llmrec.errors import ConfigError
    from llmrec.train.finetune import check_resumable

    check_resumable(tmp_path, {"train.seed": 0})  # nothing to resume
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    with pytest.raises(ConfigError, match="records no training settings"):
        check_resumable(tmp_path, {"train.seed": 0})
    (tmp_path / "checkpoint" / "settings.json").write_text('{"train.seed": 0, "model.name": "m"}')
    check_resumable(tmp_path, {"train.seed": 0, "model.name": "m"})
    with pytest.raises(ConfigError, match=r"\(model.name: 'm' -> \(absent\)\)"):
        check_resumable(tmp_path, {"train.seed": 0})


def _tok():
    from llmrec.models.load import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


def _ds(cfg):
    from llmrec.data.loaders import load_dataset

    return load_dataset(cfg.data, lambda *_: None)


def _split(cfg):
    from pathlib import Path

    from llmrec.data.split import Split

    return Split.load(Path(cfg.out_dir) / "split.jsonl")


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(ml100k, ml100k_split, tokenizer, tmp_path):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.adapters import make_peft_config
    from llmrec.models.load import resolve_model
    from llmrec.train.finetune import train

    ex = build_examples(load_template("yesno/will_like_v1"), tokenizer, ml100k, ml100k_split,
                        history_len=2, n=20, max_users=8)
    train_ds, valid_ds = to_hf_dataset(ex[:12]), to_hf_dataset(ex[12:])
    path = resolve_model("smollm2-135m-instruct")

    def fresh():
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        return get_peft_model(base, make_peft_config(train_cfg("train.lora.rank=2", "train.lora.dropout=0.0")))

    args = {"pad_id": tokenizer.pad_token_id, "batch_size": 2, "gradient_accumulation": 2,
            "learning_rate": 1e-3, "epochs": 2, "max_steps": 0, "warmup_ratio": 0.0, "scheduler": "linear",
            "eval_every": 2, "patience": 9, "seed": 0, "log": lambda *_: None}

    def trainable(model):
        return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}

    whole = fresh()
    state = train(whole, train_ds, valid_ds, out=tmp_path / "whole", validate=lambda m: 0.0, **args)
    assert state.step == 6  # 12 examples / (2 x 2 accumulated) x 2 epochs

    calls = []

    def stop_at_second_epoch(m):
        calls.append(1)
        if len(calls) == 3:  # the evaluation at step 4, after step 2's checkpoint
            raise Interrupt
        return 0.0

    with pytest.raises(Interrupt):
        train(fresh(), train_ds, valid_ds, out=tmp_path / "cut", validate=stop_at_second_epoch, **args)
    assert json.loads((tmp_path / "cut/checkpoint/state.json").read_text())["step"] == 2
    logs = []
    resumed = fresh()
    args["log"] = logs.append
    state2 = train(resumed, train_ds, valid_ds, out=tmp_path / "cut", validate=lambda m: 0.0, **args)
    assert any(line.startswith("resuming from step 2") for line in logs)
    assert state2.step == 6
    a, b = trainable(whole), trainable(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    assert [c["step"] for c in state2.curve if "step" in c] == [0, 2, 4, 6]


def test_collm_second_step_trains_only_the_projector(tiny, ml100k_vectors):
    """`train.init_adapter` + `train.cf.train=projector`: the loaded LoRA stays as it was."""
    from safetensors.torch import load_file

    from llmrec.recipes import train

    cfg, folder = tiny
    first = folder / "a" / "best"
    res = train.run(with_(cfg, "train.template=letters/candidates_cf_only_v1", f"train.cf.vectors={ml100k_vectors}",
                          f"train.init_adapter={first}", "train.cf.train=projector", "train.max_steps=2",
                          "train.eval_every=2", f"train.out={folder / 'step2'}"), log=lambda *_: None)
    before, after = (load_file(str(p / "adapter_model.safetensors")) for p in (first, res.adapter_dir.parent / "checkpoint" / "adapter"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    projector = load_file(str(res.adapter_dir.parent / "checkpoint" / "adapter" / "cf_projector.safetensors"))
    assert projector["unknown"].abs().sum() > 0  # the projector trained (its unknown rows start at zero)


def test_curriculum_trains_on_text_twins_then_hybrid_prompts(tiny, ml100k_vectors):
    """`train.cf.curriculum`: the examples carry the text-only twin's prompts (no slot ids), paired
    with the hybrid ones; a wrong twin is refused; a CoLLM second step starts from the residual weight."""
    import datasets
    from llmrec.errors import ConfigError
    from llmrec.recipes import train

    cfg, folder = tiny
    cfg = with_(cfg, "train.template=letters/candidates_cf_v1", "train.cf.curriculum=letters/candidates_v1",
                f"train.cf.vectors={ml100k_vectors}", "train.cf.residual=true", "train.targets=train",
                "train.max_steps=2", "train.eval_every=2", f"train.out={folder / 'llara'}")
    res = train.run(cfg, log=lambda *_: None)
    assert (res.adapter_dir / "cf_projector.safetensors").is_file()
    caches = [p for p in Path(cfg.out_dir, "examples").glob("*/train")
              if "text_input_ids" in datasets.load_from_disk(str(p)).column_names]
    assert len(caches) == 1
    rows = datasets.load_from_disk(str(caches[0]))
    vocab = len(_tok())
    for row in rows:
        assert sum(t >= vocab for t in row["input_ids"]) == 3 + 1 + 20  # history, user, candidates
        assert max(row["text_input_ids"]) < vocab
        # the same answer letter, read at each prompt's own answer position
        answer = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
        assert answer == [t for t, lab in zip(row["text_input_ids"], row["text_labels"]) if lab != -100]
    for twin in ("letters/candidates_cf_only_v1", "title/next_item_v1"):
        with pytest.raises(ConfigError, match="text-only twin"):
            train.run(with_(cfg, f"train.cf.curriculum={twin}"), log=lambda *_: None)
    logs = []
    train.run(with_(cfg, "train.cf.curriculum=''", f"train.init_adapter={res.adapter_dir}", "train.cf.train=projector",
                    "train.max_steps=1", "train.eval_every=1", f"train.out={folder / 'llara2'}"), log=logs.append)
    assert any(line.startswith("projector and residual weight start from") for line in logs)


def test_gradient_checkpointing_trains_the_same_adapter(tiny):
    from llmrec.recipes import train

    cfg, folder = tiny
    train.run(with_(cfg, f"train.out={folder / 'gc'}", "train.gradient_checkpointing=true"), log=lambda *_: None)
    a, gc = checkpoint_weights(folder / "a"), checkpoint_weights(folder / "gc")
    assert a.keys() == gc.keys()
    assert max(float((a[k] - gc[k]).abs().max()) for k in a) <= 1e-6
    # the same math, so a checkpoint written without it resumes with it (and the other way round)
    settings = json.loads((folder / "gc" / "checkpoint" / "settings.json").read_text())
    assert "train.gradient_checkpointing" not in settings
    assert settings == json.loads((folder / "a" / "checkpoint" / "settings.json").read_text())


def test_packed_batches_give_the_padded_loss(prepared_valid, tokenizer):
    from llmrec.models.load import load_model
    from llmrec.recipes import train
    from llmrec.train.finetune import collate, lm_loss, pack

    cfg = prepared_valid
    examples, _ = train.cached_examples(cfg, load_template("title/next_item_v1"), _tok(), _ds(cfg), _split(cfg), 3,
                                        train.training_prompt_budget(cfg, resolve_model(cfg.model.name)),
                                        lambda *_: None)
    by_length = sorted(range(len(examples)), key=lambda k: len(examples[k]["input_ids"]))
    # two long examples and six shorter ones (their prompts cut from the left, the answer kept), so rows can share
    short = [{"input_ids": examples[k]["input_ids"][25:], "labels": examples[k]["labels"][25:]} for k in by_length[:6]]
    rows = short + [examples[k] for k in by_length[-2:]]
    padded = collate(tokenizer.pad_token_id)(rows)
    packed = pack(padded, tokenizer.pad_token_id)
    lengths = padded["attention_mask"].sum(1)
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]  # fewer rows ...
    assert packed["input_ids"].shape[1] == int(lengths.max())  # ... as wide as the longest example
    assert sorted(packed["labels"][packed["labels"] != -100].tolist()) == \
        sorted(padded["labels"][padded["labels"] != -100].tolist())
    model = load_model(cfg.model.name, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        a, b = float(lm_loss(model, padded)), float(lm_loss(model, packed))
    assert abs(a - b) < 1e-5, (a, b)  # no attention across examples: each token sees what it sees padded
    # a row's second example, scored alone in its row, gives its loss padded alone: it never sees the first
    row = packed["input_ids"][-1]
    n0 = next(int(n) for j, n in enumerate(lengths) if torch.equal(row[:n], padded["input_ids"][j, :n]))
    second = next(j for j in range(len(rows)) if int(lengths[j]) <= len(row) - n0
                  and torch.equal(row[n0:n0 + int(lengths[j])], padded["input_ids"][j, : int(lengths[j])]))
    n1 = int(lengths[second])
    only = {k: v[-1:].clone() for k, v in packed.items()}
    only["labels"][0, :n0] = -100
    only["labels"][0, n0 + n1:] = -100
    alone = {k: v[second:second + 1, :n1] for k, v in padded.items()}
    with torch.no_grad():
        assert abs(float(lm_loss(model, only)) - float(lm_loss(model, alone))) < 1e-5


def test_packed_training_matches_padded_training(tiny):
    from llmrec.recipes import train

    cfg, folder = tiny
    train.run(with_(cfg, f"train.out={folder / 'packed'}", "train.batches=packed"), log=lambda *_: None)
    a, p = checkpoint_weights(folder / "a"), checkpoint_weights(folder / "packed")
    assert max(float((a[k] - p[k]).abs().max()) for k in a) <= 1e-5
    # grouped batches: the run trains on `grouped_order`'s batches, and records their padding
    from llmrec.train.finetune import grouped_order

    train.run(with_(cfg, f"train.out={folder / 'grouped'}", "train.batches=grouped", "train.max_steps=2"),
              log=lambda *_: None)
    examples, _ = train.cached_examples(cfg, load_template(cfg.train.template), _tok(), _ds(cfg), _split(cfg),
                                        cfg.train.history_len, train.training_prompt_budget(
                                            cfg, resolve_model(cfg.model.name)), lambda *_: None)
    lengths = [len(x) for x in examples["input_ids"]]
    order, size = grouped_order(lengths, cfg.train.batch_size, cfg.train.seed), cfg.train.batch_size
    batches = [[lengths[k] for k in order[s:s + size]] for s in (0, size)]
    expected = 1 - sum(map(sum, batches)) / sum(len(b) * max(b) for b in batches)
    recorded = json.loads((folder / "grouped" / "train_state.json").read_text())["curve"][-1]["padding_share"]
    assert recorded == round(expected, 4)


def test_grouped_order_batches_similar_lengths():
    import numpy as np

    from llmrec.train.finetune import grouped_order

    lengths = np.random.default_rng(1).integers(60, 320, size=1003).tolist()
    order = grouped_order(lengths, 8, seed=0)
    assert sorted(order) == list(range(1003)) and order == grouped_order(lengths, 8, seed=0)
    assert order != grouped_order(lengths, 8, seed=1)

    def padding(o):
        batches = [[lengths[k] for k in o[s:s + 8]] for s in range(0, len(o), 8)]
        return 1 - sum(map(sum, batches)) / sum(len(b) * max(b) for b in batches)

    random = np.random.default_rng(0).permutation(1003).tolist()
    assert padding(random) > 0.3 and padding(order) < 0.02
