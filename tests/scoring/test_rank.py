"""Ranker styles: letter mapping and shuffling (fake backend), and real-model parity for yes/no."""

import numpy as np
import pytest
import torch

from llmrec.prompts.render import load_template
from llmrec.scoring.rank import LLMRanker, UserQuery


class EchoBackend:
    """Fake: the log-prob of token t is t/1000, so scores reveal which token was read."""

    name, max_length, caches_prefixes, slots = "echo", 8192, False, None

    def next_token_logprobs(self, prompts, token_ids):
        self.prompts = prompts
        return [np.array(t, dtype=float) / 1000 for t in token_ids]

    def continuation_logprobs(self, requests):
        self.requests = requests
        return [[(np.array(c, dtype=float) + len(r.prompt)) / 1000 for c in r.continuations] for r in requests]


def _query(ml100k_split, ml100k, user="7", cands=("1", "2", "3", "4", "5")):
    return UserQuery(user, ml100k_split[user].events(ml100k, "test", 5), list(cands))


def test_letters_map_back_through_the_shuffle(ml100k, ml100k_split, tokenizer):
    backend = EchoBackend()
    ranker = LLMRanker(load_template("letters/candidates_v1"), backend, tokenizer, ml100k, seed=3)
    q = _query(ml100k_split, ml100k)
    (scored,) = ranker.score([q])
    order = ranker.shuffled(q)
    assert sorted(order) == [0, 1, 2, 3, 4] and order != [0, 1, 2, 3, 4]
    letter_ids = [tokenizer.convert_tokens_to_ids(x) for x in "ABCDE"]
    text = tokenizer.decode(backend.prompts[0])
    for j, k in enumerate(order):  # candidate k is shown as letter j and gets that letter's score
        assert scored.scores[k] == letter_ids[j] / 1000
        assert f"({'ABCDE'[j]}) {ml100k.items[q.candidates[k]].title}" in text
    other = LLMRanker(load_template("letters/candidates_v1"), EchoBackend(), tokenizer, ml100k, seed=4)
    assert other.shuffled(q) != order  # the run seed changes the order


def test_title_calibrated_subtracts_content_free_prompt(ml100k, ml100k_split, tokenizer):
    backend = EchoBackend()
    t = load_template("title/next_item_v1")
    q = _query(ml100k_split, ml100k)
    (plain,) = LLMRanker(t, backend, tokenizer, ml100k, "sum").score([q])
    (mean,) = LLMRanker(t, backend, tokenizer, ml100k, "mean").score([q])
    (cal,) = LLMRanker(t, backend, tokenizer, ml100k, "calibrated").score([q])
    conts = backend.requests[0].continuations  # the null prompt's request, made last
    assert "watched, oldest first:\nThe next movie" in tokenizer.decode(backend.requests[0].prompt)
    null = np.array([(sum(c) + len(c) * len(backend.requests[0].prompt)) / 1000 for c in conts])
    np.testing.assert_allclose(cal.scores, plain.scores - null)
    assert (cal.scores > 0).all()  # the user's prompt is longer than the content-free one
    lengths = [len(tokenizer(" " + ml100k.items[c].title, add_special_tokens=False).input_ids) for c in q.candidates]
    np.testing.assert_allclose(mean.scores, plain.scores / np.array(lengths))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yesno/will_like_v1", "yesno/will_like_chat_v1", "letters/candidates_chat_v1"])
def test_answer_token_styles_equal_naive_on_real_model(name, hf_backend, ml100k, ml100k_split, tokenizer):
    ranker = LLMRanker(load_template(name), hf_backend, tokenizer, ml100k)
    q = _query(ml100k_split, ml100k, user="42", cands=("50", "181", "1", "99"))
    (scored,) = ranker.score([q])
    prompts, order = ranker.build_prompts(q)
    with torch.inference_mode():
        last = [torch.log_softmax(hf_backend.model(torch.tensor([p.ids])).logits[0, -1].float(), -1) for p in prompts]
    if ranker.template.style == "yesno":
        yes, no = (tokenizer.convert_tokens_to_ids(x) for x in (("ĠYes", "ĠNo") if not ranker.template.chat else ("Yes", "No")))
        ref = np.array([(lp[yes] - lp[no]).item() for lp in last])
    else:
        ref = np.empty(4)
        ref[order] = [last[0][tokenizer.convert_tokens_to_ids(x)].item() for x in "ABCD"]
    np.testing.assert_allclose(scored.scores, ref, atol=1e-4)
    if ranker.template.style == "yesno":  # whole prompts, as for a backend with its own prefix cache
        hf_backend.caches_prefixes = True
        try:
            (whole,) = ranker.score([q])
        finally:
            del hf_backend.caches_prefixes
        np.testing.assert_allclose(whole.scores, ref, atol=1e-4)


def test_shuffles_average_the_scores_of_several_orders(ml100k, ml100k_split, tokenizer):
    from llmrec.errors import ConfigError

    letter_ids = [tokenizer.convert_tokens_to_ids(x) for x in "ABCDE"]
    q = _query(ml100k_split, ml100k)
    ranker = LLMRanker(load_template("letters/candidates_v1"), EchoBackend(), tokenizer, ml100k, seed=3, shuffles=3)
    orders = []
    for p in range(3):
        ranker._pass = p
        orders.append(ranker.shuffled(q))
    ranker._pass = 0
    assert len({tuple(o) for o in orders}) == 3  # three different orders of the same list
    (scored,) = ranker.score([q])
    expected = np.zeros(5)
    for order in orders:
        for j, k in enumerate(order):
            expected[k] += letter_ids[j] / 1000 / 3
    np.testing.assert_allclose(scored.scores, expected)
    assert [scored.shown[k] for k in orders[0]] == [0, 1, 2, 3, 4]  # positions in the first prompt
    with pytest.raises(ConfigError, match="rank.shuffles=2: title/next_item_v1 is title style"):
        LLMRanker(load_template("title/next_item_v1"), EchoBackend(), tokenizer, ml100k, shuffles=2)


def test_rank_reports_hr1_by_target_position(prepared, tmp_path):
    import json

    from llmrec.config import apply_overrides, from_dict, to_dict
    from llmrec.recipes import rank

    cfg = from_dict(type(prepared), apply_overrides(to_dict(prepared), [
        "rank.template=letters/candidates_v1", "rank.users=3", "rank.shuffles=2", f"rank.run_dir={tmp_path / 'r'}"]))
    rank.run(cfg, log=lambda *_: None)
    rows = [json.loads(x) for x in (tmp_path / "r" / "ranks.jsonl").read_text().splitlines()]
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["settings"]["shuffles"] == 2
    report = run["hr1_by_target_position"]
    assert sum(v["users"] for v in report.values()) == 3
    for r in rows:
        assert 0 <= r["target_position"] < 20
        assert report[str(r["target_position"])]["hr@1"] >= float(r["rank"] <= 1) / report[str(r["target_position"])]["users"]
