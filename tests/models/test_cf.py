"""Collaborative tokens on the real SmolLM2 and ML-100K: slots in prompts, the projector table, the
hooked embedding layer, shared-prefix scoring equal to the naive path, prompt-tuning with vectors,
and adapter folders that reload to the same scores and refuse changed vectors."""

import numpy as np
import pytest
import torch

from llmrec.backends import HFSettings
from llmrec.backends.hf import HFBackend
from llmrec.baselines.vectors import Vectors
from llmrec.errors import ConfigError, TemplateError
from llmrec.models import cf
from llmrec.models.load import resolve_model
from llmrec.prompts.build import PromptBuilder
from llmrec.prompts.render import load_template
from llmrec.scoring.rank import LLMRanker, UserQuery

pytestmark = pytest.mark.slow  # real model weights
MODEL = "smollm2-135m-instruct"


def _shake(table, seed):
    """Re-initialise the projector with large weights, so vectors visibly change scores."""
    torch.manual_seed(seed)
    for p in table.projector.parameters():
        torch.nn.init.normal_(p, std=0.5)


@pytest.fixture(scope="module")
def lora_cf(ml100k_vectors, tokenizer):
    """A LoRA model (random B) with a collaborative-token table attached."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.adapters import make_peft_config
    from tests.conftest import train_cfg

    torch.manual_seed(0)
    pcfg = make_peft_config(train_cfg("train.lora.rank=4", "train.lora.target_modules=['q_proj', 'v_proj']"))
    pcfg.init_lora_weights = False
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32), pcfg)
    table = cf.attach(model, cf.build_table(str(ml100k_vectors), 49152, 576, tokenizer, proj_hidden=32))
    _shake(table, 0)
    return model.eval(), table


def _queries(split, ds, users=("1", "7", "42")):
    rng = np.random.default_rng(0)
    items = sorted(ds.items)
    return [UserQuery(u, split[u].events(ds, "test", 4), [split[u].test, *(items[k] for k in rng.choice(1600, 5, replace=False))])
            for u in users]


def test_slot_ids_layout_unknowns_and_stages(cf_slots, ml100k_split):
    v = cf_slots.vocab_size
    assert v == 49152 and cf_slots.placeholder == "<empty_output>" and cf_slots.placeholder_id == 16
    users, items = len(cf_slots.user_index), len(cf_slots.item_index)
    assert cf_slots.id_of("user", "no-such-user") == v and cf_slots.id_of("item", "no-such-item") == v + 1
    assert cf_slots.id_of("user", "1") == v + 2 + cf_slots.user_index["1"]
    assert cf_slots.id_of("item", "50") == v + 2 + users + cf_slots.item_index["50"]
    ids = torch.tensor([v, v + 1, cf_slots.id_of("user", "1"), cf_slots.id_of("item", "50"), v + 1 + users + items])
    with torch.no_grad():
        rows = cf_slots.rows(ids)
        unknown = cf_slots.projector.unknown
        # the unknown slots read the learned unknown input through their kind's MLP
        torch.testing.assert_close(rows[0], cf_slots.projector.user(unknown[0]))
        torch.testing.assert_close(rows[1], cf_slots.projector.item(unknown[1]))
        torch.testing.assert_close(rows[3], cf_slots.projector.item(cf_slots.item_inputs[cf_slots.item_index["50"]]))
    assert rows.shape == (5, 576)


def test_user_rows_follow_the_stage(tokenizer, tmp_path):
    rng = np.random.default_rng(1)
    test_u, valid_u = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    Vectors("sasrec", ["a", "b"], ["x", "y", "z"], test_u, rng.normal(size=(3, 4)).astype(np.float32),
            np.zeros(3, np.float32), valid_user_vectors=valid_u).save(tmp_path)
    table = cf.build_table(str(tmp_path), 49152, 576, tokenizer)
    slot = torch.tensor([table.id_of("user", "a")])
    with torch.no_grad():
        at_test = table.rows(slot)
        table.set_stage("valid")
        at_valid = table.rows(slot)
    assert not torch.allclose(at_test, at_valid)
    # user input is [p_u, 1] scaled to unit RMS, so the projector sees the stage's vector
    scaled = np.concatenate([valid_u, np.ones((2, 1))], 1)
    np.testing.assert_allclose(table.user_inputs_valid.numpy(), scaled / np.sqrt(np.mean(scaled ** 2)), rtol=1e-6)


def test_unknown_rate_trains_the_fallback_only_in_training(tokenizer, ml100k_vectors):
    table = cf.build_table(str(ml100k_vectors), 49152, 576, tokenizer, proj_hidden=8, unknown_rate=0.5)
    ids = torch.full((400,), table.id_of("item", "50"))
    with torch.no_grad():
        known = table.projector.item(table.item_inputs[table.item_index["50"]])
        table.train()
        rows = table.rows(ids)
        fallback = (rows - table.projector.item(table.projector.unknown[1])).abs().amax(1) < 1e-5
        assert 120 < int(fallback.sum()) < 280  # about half, at rate 0.5
        table.eval()
        torch.testing.assert_close(table.rows(ids), known.expand(400, -1))


def test_hostile_titles_and_missing_table(tokenizer, ml100k, cf_slots, tmp_path):
    template = load_template("yesno/will_like_cf_v1")
    with pytest.raises(TemplateError, match="places collaborative vectors"):
        PromptBuilder(template, tokenizer, 4096)
    builder = PromptBuilder(template, tokenizer, 4096, slots=cf_slots)
    user = {"id": "1"}
    # a title holding the placeholder token would shift every vector: refused, naming the user
    bad = {"id": "50", "title": "Star Wars <empty_output>", "year": 1977, "genres": []}
    with pytest.raises(TemplateError, match=r"user 1: the prompt has 3 placeholder tokens for 2"):
        builder.build([], 1, user_id="1", user=user, candidate=bad)
    # a title imitating a slot marker stays text: only the filter can make a slot
    forged = {"id": "50", "title": "\x00cf0000:item:7\x00", "year": None, "genres": []}
    prompt = builder.build([], 1, user_id="1", user=user, candidate=forged)
    assert prompt.slot_ids == (cf_slots.id_of("user", "1"), cf_slots.id_of("item", "50"))
    p = tmp_path / "t_v1.j2"
    p.write_text("{#\nstyle: yesno\n#}\n{{ 3 | cf }} Answer:")
    with pytest.raises(TemplateError, match="cf filter takes the user or an item"):
        PromptBuilder(load_template(str(p)), tokenizer, 4096, slots=cf_slots).build([], 1, user={"id": "1"}, candidate=bad)


def test_hooked_embeddings_and_gradients(lora_cf, tokenizer):
    model, table = lora_cf
    embedding = model.get_base_model().get_input_embeddings()
    ids = torch.tensor([[15, 892, table.id_of("item", "50"), 28, table.id_of("user", "1"), 30]])
    out = embedding(ids)
    torch.testing.assert_close(out[0, [0, 1, 3, 5]], embedding.weight[[15, 892, 28, 30]])
    with torch.no_grad():
        torch.testing.assert_close(out[0, [2, 4]], table.rows(ids[0, [2, 4]]))
    model.train()
    loss = model(input_ids=ids, labels=ids.masked_fill(ids >= 49152, -100)).loss
    loss.backward()
    model.eval()
    grads = {n: p.grad for n, p in table.projector.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n != "unknown")
    assert grads["unknown"] is None or float(grads["unknown"].abs().sum()) == 0  # no unknown slot here
    model.zero_grad()
    table.projector.zero_grad()


@pytest.mark.parametrize("name", ["yesno/will_like_cf_v1", "letters/candidates_cf_v1", "yesno/will_like_cf_chat_v1"])
def test_shared_prefix_equals_naive_and_vectors_matter(name, lora_cf, tokenizer, ml100k, ml100k_split):
    model, table = lora_cf
    template = load_template(name)
    queries = _queries(ml100k_split, ml100k)
    scores = {}
    for shared in (True, False):
        ranker = LLMRanker(template, HFBackend(model_obj=model, settings=HFSettings(shared_prefix=shared)), tokenizer, ml100k)
        scores[shared] = np.array([s.scores for s in ranker.score(queries)])
    np.testing.assert_allclose(scores[True], scores[False], atol=2e-4)
    before = {k: v.clone() for k, v in table.projector.state_dict().items()}
    _shake(table, 1)
    ranker = LLMRanker(template, HFBackend(model_obj=model), tokenizer, ml100k)
    other = np.array([s.scores for s in ranker.score(queries)])
    table.projector.load_state_dict(before)
    assert np.abs(other - scores[True]).max() > 1e-2  # the vectors go into the forward pass


def test_prompt_tuning_with_vectors(ml100k_vectors, tokenizer, ml100k, ml100k_split):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.adapters import make_peft_config
    from tests.conftest import train_cfg

    torch.manual_seed(0)
    pcfg = make_peft_config(train_cfg("train.adapter=prompt-tuning", "train.prompt_tuning.num_virtual_tokens=4"))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32), pcfg).eval()
    table = cf.attach(model, cf.build_table(str(ml100k_vectors), 49152, 576, tokenizer, proj_hidden=16))
    _shake(table, 2)
    template = load_template("yesno/will_like_cf_v1")
    queries = _queries(ml100k_split, ml100k, users=("3", "9"))
    shared, naive = ([s.scores for s in LLMRanker(template, HFBackend(model_obj=model, settings=HFSettings(shared_prefix=flag)), tokenizer,
                                                  ml100k).score(queries)] for flag in (True, False))
    np.testing.assert_allclose(np.array(shared), np.array(naive), atol=2e-4)
    # the same prompt through peft's own forward (soft prompt + hooked embeddings) gives the same Yes - No
    ranker = LLMRanker(template, None, tokenizer, ml100k, max_length=2048, slots=table)
    (built, *_), _ = ranker.scorables(queries[0])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([built.prompt.ids])).logits[0, -1].log_softmax(-1)
    yes, no = built.answers[0][0], built.answers[1][0]
    assert float(logits[yes] - logits[no]) == pytest.approx(shared[0][0], abs=2e-4)


def test_adapter_folder_reloads_and_refuses_changed_vectors(lora_cf, tokenizer, ml100k, ml100k_split, tmp_path):
    import shutil

    from llmrec.train.finetune import save_adapter

    model, table = lora_cf
    vectors_dir = tmp_path / "run"
    shutil.copytree(table.source.rsplit("/", 1)[0], vectors_dir)
    original = table.source, table.source_sha256
    table.source = str(vectors_dir / "vectors.npz")
    save_adapter(model, tmp_path / "adapter")
    table.source, table.source_sha256 = original
    template = load_template("letters/candidates_cf_v1")
    queries = _queries(ml100k_split, ml100k)
    expected = [s.scores for s in LLMRanker(template, HFBackend(model_obj=model), tokenizer, ml100k).score(queries)]
    loaded = HFBackend(MODEL, adapter=str(tmp_path / "adapter"))
    assert loaded.slots is not None and loaded.slots.source == str(vectors_dir / "vectors.npz")
    got = [s.scores for s in LLMRanker(template, loaded, tokenizer, ml100k).score(queries)]
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-5)
    # a refitted baseline has other vectors: the adapter refuses them
    vec = Vectors.load(vectors_dir)
    Vectors(vec.model, vec.user_ids, vec.item_ids, vec.user_vectors * 2, vec.item_vectors, vec.item_bias).save(vectors_dir)
    with pytest.raises(ConfigError, match="changed since the adapter was trained"):
        HFBackend(MODEL, adapter=str(tmp_path / "adapter"))
    (vectors_dir / "vectors.npz").unlink()
    with pytest.raises(ConfigError, match="vectors .* are missing"):
        cf.load_table(str(tmp_path / "adapter"))


def test_residual_offsets_and_the_choice_loss_match_ranking(lora_cf, ml100k_vectors, tokenizer, ml100k, ml100k_split):
    """With a residual, ranking adds alpha * z to each candidate's score, and training's choice loss
    is the softmax over exactly those scores (LM part up to the per-prompt normaliser)."""
    from llmrec.train.examples import build_examples
    from llmrec.train.finetune import choice_loss, collate

    model, table = lora_cf
    residual = cf.build_table(str(ml100k_vectors), 49152, 576, tokenizer, proj_hidden=32, residual=True)
    residual.projector.load_state_dict({**table.projector.state_dict(), "alpha": residual.projector.alpha.detach()})
    alpha = float(residual.projector.alpha.detach())
    z = (residual.user_inputs_test @ residual.item_inputs.T).std()
    assert alpha == pytest.approx(cf.RESIDUAL_INIT / float(z), rel=1e-5)
    # z is the dot product of the scaled inputs; unknown users or items add nothing
    u, i = residual.user_index["7"], residual.item_index["50"]
    expect = float(residual.user_inputs_test[u] @ residual.item_inputs[i])
    np.testing.assert_allclose(residual.z("7", ["50", "no-such-item"]), [expect, 0.0], rtol=1e-5)
    assert not residual.z("no-such-user", ["50"]).any()
    np.testing.assert_allclose(residual.offsets("7", ["50"]), [alpha * expect], rtol=1e-5)

    template = load_template("letters/candidates_cf_v1")
    queries = _queries(ml100k_split, ml100k, users=("7", "9"))
    backend = HFBackend(model_obj=model)
    plain = [s.scores for s in LLMRanker(template, backend, tokenizer, ml100k).score(queries)]
    backend.slots = residual  # same id layout as the attached table: only the offsets differ
    with_offsets = [s.scores for s in LLMRanker(template, backend, tokenizer, ml100k).score(queries)]
    for q, a, b in zip(queries, plain, with_offsets):
        np.testing.assert_allclose(b - a, residual.offsets(q.user_id, q.candidates), rtol=1e-5, atol=1e-5)

    (e,) = build_examples(template, tokenizer, ml100k, ml100k_split, history_len=4, n=20, max_users=1,
                          targets="valid", slots=residual)
    assert len(e.choices) == 20 and e.choice == e.shown.index(ml100k_split[e.user_id].valid)
    offsets = residual.z(e.user_id, list(e.shown))
    batch = collate(0)([{"input_ids": e.input_ids, "labels": e.labels, "choices": list(e.choices),
                         "choice": e.choice, "offsets": list(offsets)}])
    with torch.no_grad():
        loss = float(choice_loss(residual.projector.alpha)(model, batch))
    (lp,) = backend.next_token_logprobs([e.input_ids[:-1]], [list(e.choices)])
    ranked = lp + alpha * offsets  # what LLMRanker scores for these candidates in this order
    assert loss == pytest.approx(float(-torch.log_softmax(torch.tensor(ranked), 0)[e.choice]), abs=1e-4)
