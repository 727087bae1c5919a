import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from llmrec.data.candidates import CandidateSet
from llmrec.data.split import Split
from llmrec.errors import DataError, TemplateError
from llmrec.prompts import render
from llmrec.prompts.build import PromptBuilder, item_vars
from llmrec.prompts.render import list_templates, load_template
from llmrec.scoring.rank import LLMRanker, UserQuery
from llmrec.sid.codes import with_codes

GOLDEN = Path(__file__).parents[1] / "golden"
SHIPPED = ["title/next_item_v1", "title/next_item_chat_v1", "title/next_item_genres_v1",
           "title/next_item_genres_chat_v1", "letters/candidates_v1", "letters/candidates_chat_v1",
           "yesno/will_like_v1", "yesno/will_like_chat_v1", "letters/candidates_cf_v1", "letters/candidates_cf_chat_v1",
           "letters/candidates_cf_only_v1", "yesno/will_like_cf_v1", "yesno/will_like_cf_chat_v1",
           "title/catalogue_v1", "title/catalogue_chat_v1", "sid/next_item_v1", "sid/next_item_titles_v1"]


def toy_codes(dataset):
    """Semantic IDs of every item, from its position (the golden renders need some codes)."""
    from llmrec.sid.codes import SemanticIDs

    items = sorted(dataset.items, key=lambda i: (len(i), i))
    return SemanticIDs(items, np.array([[k % 16, (k // 16) % 16, k // 256, 0] for k in range(len(items))]))


def test_shipped_templates_listed():
    assert list_templates() == sorted(SHIPPED)
    styles = {name: load_template(name).style for name in SHIPPED}
    assert styles["letters/candidates_v1"] == "letters" and styles["yesno/will_like_chat_v1"] == "yesno"
    assert load_template("title/next_item_chat_v1").chat and not load_template("title/next_item_v1").chat


@pytest.mark.parametrize("name", SHIPPED)
def test_golden_render(name, prepared, ml100k, tokenizer, cf_slots):
    """The exact prompt for ML-100K user 7 (5 history items, sampled-20 candidates, seed 0).
    Regenerate with UPDATE_GOLDEN=1 after an intended template change, and review the diff."""
    split = Split.load(Path(prepared.out_dir) / "split.jsonl")
    cands = CandidateSet.load(Path(prepared.out_dir) / "candidates" / "sampled-20.test.jsonl").by_user()["7"]
    q = UserQuery("7", split["7"].events(ml100k, "test", 5), list(cands.candidates))
    template = load_template(name)
    data = with_codes(ml100k, toy_codes(ml100k)) if template.style == "sid" else ml100k
    ranker = LLMRanker(template, None, tokenizer, data, max_length=8192, slots=cf_slots if template.uses_cf else None)
    (prompt, *_), order = ranker.build_prompts(q)
    golden = GOLDEN / (name.replace("/", "__") + ".txt")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(prompt.text)
    assert prompt.text == golden.read_text()
    ids = tokenizer(prompt.text, add_special_tokens=not ranker.template.chat).input_ids
    assert prompt.dropped == 0
    if not template.uses_cf:
        assert prompt.ids == ids and prompt.slot_ids == ()
        return
    # every placeholder became the slot id of the user or item written there, in prompt order
    at = [k for k, t in enumerate(ids) if t == cf_slots.placeholder_id]
    assert [prompt.ids[k] for k in at] == list(prompt.slot_ids) and len(at) == prompt.text.count("<empty_output>")
    assert [t for k, t in enumerate(prompt.ids) if k not in at] == [t for k, t in enumerate(ids) if k not in at]
    shown = [q.candidates[k] for k in order]
    history = split["7"].history("test", 5)
    expect = {"letters/candidates_cf_v1": [*history, "user", *shown], "letters/candidates_cf_chat_v1": [*history, "user", *shown],
              "letters/candidates_cf_only_v1": [*history, "user", *shown], "yesno/will_like_cf_v1": ["user", shown[0]],
              "yesno/will_like_cf_chat_v1": ["user", shown[0]]}[name]
    assert list(prompt.slot_ids) == [cf_slots.id_of("user", "7") if k == "user" else cf_slots.id_of("item", k)
                                     for k in expect]


def _write(tmp_path, body, header="style: title\nchat: false"):
    p = tmp_path / "t_v1.j2"
    p.write_text("{#\n" + header + "\n#}\n" + body)
    return p


def test_missing_variable_names_file_and_line(tmp_path):
    p = _write(tmp_path, "History:\n{% for h in history %}{{ h.title }}\n{% endfor %}\nUser: {{ usr.age }}\n")
    t = load_template(str(p))
    with pytest.raises(TemplateError, match=r"t_v1.j2:8: 'usr' is undefined"):
        t.render(history=[{"title": "A"}], user={})
    with pytest.raises(TemplateError, match=r"t_v1.j2:6: 'dict object' has no attribute 'title'"):
        t.render(history=[{"name": "A"}], usr={"age": 3})


def test_syntax_error_and_unknown_filter_fail_at_load(tmp_path):
    with pytest.raises(TemplateError, match=r"t_v1.j2:7: Unexpected end of template.*'endfor'"):
        load_template(str(_write(tmp_path, "line\n{% for h in history %}\n{{ h }}\n")))
    with pytest.raises(TemplateError, match=r"t_v1.j2:5: No filter named 'shout'"):
        load_template(str(_write(tmp_path, "{{ item_noun | shout }}\n")))


def test_bad_headers(tmp_path):
    p = tmp_path / "nohead.j2"
    p.write_text("Hello {{ item_noun }}")
    with pytest.raises(TemplateError, match=r"nohead.j2:1: a template must open with a \{# ... #\} header"):
        load_template(str(p))
    with pytest.raises(TemplateError, match="header 'style' must be one of"):
        load_template(str(_write(tmp_path, "x", header="style: ranking")))
    with pytest.raises(TemplateError, match=r"template 'title/nope_v1' not found"):
        load_template("title/nope_v1")


def test_budget_drops_oldest_history_first(ml100k_split, ml100k, tokenizer):
    t = load_template("title/next_item_v1")
    s = ml100k_split["13"]  # a long history
    history = s.events(ml100k, "test", 50)
    full = PromptBuilder(t, tokenizer, 100_000, "movie").build(history)
    assert full.dropped == 0
    limit = len(full.ids) // 2
    cut = PromptBuilder(t, tokenizer, limit + 10, "movie").build(history, reserve=10)
    assert 0 < cut.dropped < 50 and len(cut.ids) <= limit
    kept = history[cut.dropped:]
    assert cut.text == PromptBuilder(t, tokenizer, 100_000, "movie").build(kept).text  # the newest survive
    one_more = PromptBuilder(t, tokenizer, 100_000, "movie").build(history[cut.dropped - 1:])
    assert len(one_more.ids) > limit  # and it kept as many as fit
    with pytest.raises(TemplateError, match=r"user 13: the prompt needs \d+ tokens even with an empty history"):
        PromptBuilder(t, tokenizer, 15, "movie").build(history, user_id="13")


def test_item_vars_for_templates(ml100k):
    v = item_vars(ml100k.items["1"], 4.0, 881250949.0)
    assert v["title"] == "Toy Story" and v["genres"] == ["Animation", "Children's", "Comedy"]
    assert v["rating"] == 4 and v["date"] == "1997-12-04"
    assert "rating" not in item_vars(ml100k.items["1"])


PAYLOAD = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def _touch_payload(marker):
    return "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"


def test_template_body_runs_in_a_sandbox(tmp_path):
    p = _write(tmp_path, "Hello {{ item_noun }}\n" + PAYLOAD + "\n")
    t = load_template(str(p))
    with pytest.raises(TemplateError, match=r"t_v1.j2:6: unsafe access refused: access to attribute '__init__' "
                                             r"of 'type' object is unsafe"):
        t.render(item_noun="movie")
    marker = tmp_path / "pwned"
    t = load_template(str(_write(tmp_path, "x\n" + _touch_payload(marker) + "\n")))
    with pytest.raises(TemplateError, match="unsafe access refused"):
        t.render()
    assert not marker.exists()
    t = load_template(str(_write(tmp_path, "{{ ''.__class__.__mro__ }}\n")))
    with pytest.raises(TemplateError, match=r"t_v1.j2:5: unsafe access refused: access to attribute '__class__' "
                                             r"of 'str' object is unsafe"):
        t.render()
    t = load_template(str(_write(tmp_path, "{{ history.append(1) }}\n")))  # immutable: no mutation either
    with pytest.raises(TemplateError, match=r"t_v1.j2:5: unsafe access refused: .*'append' of 'list'"):
        t.render(history=[])


def test_target_header_runs_in_a_sandbox(tmp_path):
    marker = tmp_path / "pwned"
    header = "style: title\nchat: false\ntarget: " + _touch_payload(marker)
    t = load_template(str(_write(tmp_path, "{{ item_noun }}\n", header=header)))
    with pytest.raises(TemplateError, match=r"t_v1.j2:4: header 'target' .*: unsafe access refused: "
                                             r"access to attribute '__init__'"):
        t.render_target({"title": "Heat"})
    assert not marker.exists()
    header = "style: title\nchat: false\ntarget: " + PAYLOAD
    t = load_template(str(_write(tmp_path, "{{ item_noun }}\n", header=header)))
    with pytest.raises(TemplateError, match=r"header 'target'.*unsafe access refused"):
        t.render_target({"title": "Heat"})
    t = load_template(str(_write(tmp_path, "x", header="style: title\ntarget: {{ item.title }} ({{ item.year }})")))
    assert t.render_target({"title": "Heat", "year": 1995}) == "Heat (1995)"
    with pytest.raises(TemplateError, match=r"t_v1.j2:3: header 'target' .*: 'dict object' has no attribute 'year'"):
        t.render_target({"title": "Heat"})
    with pytest.raises(TemplateError, match=r"t_v1.j2:4: header 'target' '\{\{ item.title': unexpected end of template"):
        load_template(str(_write(tmp_path, "x", header="style: title\nchat: false\ntarget: {{ item.title ")))


def test_include_stays_inside_the_template_folder(tmp_path):
    folder = tmp_path / "tpl"
    folder.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    (folder / "part.j2").write_text("shared part {{ item_noun }}")
    t = load_template(str(_write(folder, "{% include 'part.j2' %}\n")))
    assert t.render(item_noun="film") == "shared part film"
    for name in ("../secret.txt", str(secret), "/../secret.txt"):
        t = load_template(str(_write(folder, "{% include '" + name + "' %}\n")))
        with pytest.raises(TemplateError, match=r"t_v1.j2:5: cannot include .*only files inside .*tpl can be"):
            t.render()
    t = load_template(str(_write(folder, "{% extends '../secret.txt' %}\n")))
    with pytest.raises(TemplateError, match="cannot include '../secret.txt'"):
        t.render()
    (folder / "link.j2").symlink_to(secret)  # a link inside the folder that leads out of it
    t = load_template(str(_write(folder, "{% include 'link.j2' %}\n")))
    with pytest.raises(TemplateError, match="cannot include 'link.j2'"):
        t.render()


@pytest.mark.parametrize("ts", [1e12, -1e15, float("inf")])
def test_item_vars_refuses_a_timestamp_without_a_date(ml100k, ts):
    # The readers refuse these; should one reach a prompt, the error names it (not an OverflowError).
    with pytest.raises(DataError, match=rf"item '1': timestamp {ts!r}: "):
        item_vars(ml100k.items["1"], 4.0, ts)
    assert item_vars(ml100k.items["1"], 4.0, -86400.0)["date"] == "1969-12-31"


def test_range_is_capped_in_bodies_and_headers(tmp_path):
    # Before: range(10**9) | list built a billion-item list (Jinja's own cap is 100,000 per range).
    t = load_template(str(_write(tmp_path, "x\n{{ range(10**9) | list }}\n")))
    with pytest.raises(TemplateError, match=r"t_v1.j2:6: render stopped: range\(\) of 1,000,000,000 items; a "
                                             r"template may use at most 10,000$"):
        t.render()
    assert load_template(str(_write(tmp_path, "{{ range(10000) | length }}"))).render() == "10000"
    t = load_template(str(_write(tmp_path, "x", header="style: title\nchat: false\ntarget: {{ range(10**9)|list }}")))
    with pytest.raises(TemplateError, match=r"t_v1.j2:4: header 'target' .*: render stopped: range\(\) of "
                                             r"1,000,000,000 items"):
        t.render_target({"title": "Heat"})


@pytest.mark.parametrize("body", [
    "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",  # no output to count
    "{% set l = range(10000) | list %}{% for i in l %}{% for j in l %}{% endfor %}{% endfor %}",
])
def test_nested_loops_stop_after_a_million_iterations(tmp_path, body):
    # Before: 10^8 iterations, a minute or more in a rank job, for every user.
    t = load_template(str(_write(tmp_path, body)))
    start = time.monotonic()
    with pytest.raises(TemplateError, match=r"t_v1.j2(:5)?: render stopped: (more than 1,000,000 loop iterations "
                                             r"in one render|the rendered text passes 1,000,000 characters)$"):
        t.render()
    assert time.monotonic() - start < 10


def test_a_recursive_loop_counts_every_level(tmp_path, monkeypatch):
    # The recursive calls loop(...) iterate their own argument: 10^9 leaves unless it is counted too.
    monkeypatch.setattr(render, "MAX_LOOP_STEPS", 100_000)
    t = load_template(str(_write(tmp_path, "{% for x in range(1000) recursive %}{% if loop.depth < 3 %}"
                                           "{{ loop(range(1000)) }}{% endif %}{% endfor %}")))
    with pytest.raises(TemplateError, match=r"t_v1.j2:5: render stopped: more than 100,000 loop iterations"):
        t.render()


def test_a_slow_loop_body_stops_at_the_time_limit(tmp_path, monkeypatch):
    # Few iterations, each sorting 10,000 items: the iteration count alone would let it run ~10^4 sorts.
    monkeypatch.setattr(render, "MAX_SECONDS", 0.5)
    t = load_template(str(_write(tmp_path, "{% set l = range(10000) | list %}\n"
                                           "{% for i in range(10000) %}{% set x = l | sort %}{% endfor %}")))
    start = time.monotonic()
    with pytest.raises(TemplateError, match=r"t_v1.j2:6: render stopped: the render took more than 0.5 s$"):
        t.render()
    assert time.monotonic() - start < 5


def test_rendered_text_is_capped(tmp_path):
    t = load_template(str(_write(tmp_path, "{% for i in range(10000) %}{{ 'x' * 200 }}{% endfor %}")))
    with pytest.raises(TemplateError, match=r"t_v1.j2: render stopped: the rendered text passes 1,000,000 "
                                             r"characters$"):
        t.render()
    assert len(load_template(str(_write(tmp_path, "{{ 'x' * 1000000 }}"))).render()) == 1_000_000


def test_loops_render_as_before_and_each_render_has_its_own_budget(tmp_path):
    body = ("{% for x in xs if x > 1 %}{{ x }}/{{ loop.length }}{% if loop.last %}.{% endif %}{% else %}none"
            "{% endfor %}|{% for n in tree recursive %}{{ n.k }}({{ loop(n.c) }}){% endfor %}")
    t = load_template(str(_write(tmp_path, body)))
    assert t.render(xs=[1, 2, 3], tree=[{"k": "a", "c": [{"k": "b", "c": []}]}]) == "2/23/2.|a(b())"
    assert t.render(xs=[1], tree=[]) == "none|"
    # 640,800 iterations each: within one render's budget, over it for two together.
    t = load_template(str(_write(tmp_path, "{% for i in range(800) %}{% for j in range(800) %}{% endfor %}"
                                           "{% endfor %}{{ n }}")))
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda n: t.render(n=n), range(2))) == ["0", "1"]
    assert t.render(n=2) == "2"
