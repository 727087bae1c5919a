import json
import os
import re

import pytest

from llmrec.cli import cmd_rank, load, main, parse_args
from llmrec.config import Config, load_config


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for command in ("assets", "prepare"):
        assert command in out


def test_prepare_writes_files_and_prints_config(tmp_path, capsys, ml100k):
    """The default output starts with what the command does; --show-config adds the resolved config."""
    out_dir = tmp_path / "run"
    argv = ["prepare", "--config", "scripts/configs/ml100k.toml", f"out_dir={out_dir}",
            "candidates.kinds=['sampled']", "candidates.stages=['test']", "candidates.seed=5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"prepare: ml-100k (recbole) -> {out_dir}\n") and "# resolved config" not in out
    assert main(argv + ["--show-config"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# resolved config\n") and "seed = 5" in out
    assert "users                                    943               943" in out
    stats = json.loads((out_dir / "stats.json").read_text())
    assert stats["before_filtering"]["interactions"] == 100000
    assert sorted(p.name for p in (out_dir / "candidates").iterdir()) == ["sampled-20.test.jsonl"]
    assert "seed = 5" in (out_dir / "config.toml").read_text()


def test_bad_config_is_one_line_error(capsys):
    assert main(["prepare", "candidates.sed=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmrec: error: unknown config key 'candidates.sed'")


# --- overrides anywhere on the command line -------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["rank", "--template", "letters/candidates_v1", "--users", "3", "data.item_noun=film", "rank.seed=2"],
    ["rank", "data.item_noun=film", "--template", "letters/candidates_v1", "rank.seed=2", "--users", "3"],
    ["rank", "data.item_noun=film", "rank.seed=2", "-t", "letters/candidates_v1", "--users=3"],
])
def test_rank_overrides_before_between_and_after_options(argv):
    args = parse_args(argv)
    assert args.command == "rank" and args.func is cmd_rank
    assert args.overrides == ["data.item_noun=film", "rank.seed=2"]
    assert args.template == "letters/candidates_v1" and args.users == 3
    cfg = load(args)
    assert (cfg.data.item_noun, cfg.rank.seed, cfg.rank.template, cfg.rank.users) == (
        "film", 2, "letters/candidates_v1", 3)


@pytest.mark.parametrize("argv", [
    ["prompts", "render", "-t", "title/next_item_v1", "--user", "7", "data.item_noun=film"],
    ["prompts", "render", "data.item_noun=film", "-t", "title/next_item_v1", "--user", "7"],
    ["prompts", "-t", "title/next_item_v1", "render", "--user", "7", "data.item_noun=film"],
])
def test_prompts_render_overrides_anywhere(argv):
    args = parse_args(argv)
    assert (args.action, args.template, args.user, args.overrides) == (
        "render", "title/next_item_v1", "7", ["data.item_noun=film"])


@pytest.mark.parametrize("argv", [
    ["baseline", "--name", "pop", "baseline.top_k=5", "candidates.n=10"],
    ["baseline", "baseline.top_k=5", "--name", "pop", "candidates.n=10"],
    ["baseline", "baseline.top_k=5", "candidates.n=10", "--name=pop"],
])
def test_baseline_overrides_anywhere(argv):
    args = parse_args(argv)
    assert (args.name, args.overrides) == ("pop", ["baseline.top_k=5", "candidates.n=10"])


@pytest.mark.parametrize("argv", [
    ["prepare", "--config", "scripts/configs/ml100k.toml", "candidates.seed=5", "split.history_len=9"],
    ["prepare", "candidates.seed=5", "--config", "scripts/configs/ml100k.toml", "split.history_len=9"],
    ["prepare", "candidates.seed=5", "split.history_len=9", "-c", "scripts/configs/ml100k.toml"],
])
def test_prepare_overrides_anywhere(argv):
    args = parse_args(argv)
    assert args.config == "scripts/configs/ml100k.toml"
    cfg = load_config(args.config, args.overrides, Config)
    assert (cfg.candidates.seed, cfg.split.history_len) == (5, 9)


def test_parse_errors_and_help_still_exit_like_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["rank", "--no-such-flag", "a.b=1"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        parse_args(["frobnicate"])
    assert e.value.code == 2 and "invalid choice: 'frobnicate'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("llmrec ")
    with pytest.raises(SystemExit) as e:
        parse_args(["prompts", "--help"])
    assert e.value.code == 0 and "usage: llmrec prompts" in capsys.readouterr().out


def test_prompts_render_with_override_after_options(prepared, capsys):
    """The reported command line: an override after -t/--user used to be 'unrecognized arguments'."""
    base = ["prompts", "render", "-t", "title/next_item_v1", "--user", "7", f"out_dir={prepared.out_dir}"]
    assert main(base) == 0
    full_out, full_err = capsys.readouterr()
    assert full_err.endswith(" tokens; 0 oldest history items dropped by the budget\n")
    budget = "rank.max_prompt_tokens=45"
    for argv in (base + [budget], ["prompts", "render", budget, *base[2:]]):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        n_tokens, dropped = re.fullmatch(r"\n# (\d+) tokens; (\d+) oldest history items dropped by the budget\n",
                                         err).groups()
        assert int(n_tokens) <= 45 and int(dropped) > 0
        assert out.startswith("Here are the movies a user watched, oldest first:\n") and len(out) < len(full_out)


# --- one-line errors ----------------------------------------------------------------------------

DEVICE = "llmrec: error: model.device: expected auto, cpu, cuda, cuda:N or mps; got {}\n"
NAME = "llmrec: error: model.name: must name an embedded model, a local folder or a Hugging Face id; got {}\n"


@pytest.mark.parametrize("override, message", [
    ("model.device=gpu", DEVICE.format("'gpu'")),
    ("model.device='cuda:x'", DEVICE.format("'cuda:x'")),
    ("model.device='cuda:'", DEVICE.format("'cuda:'")),
    ("model.device=CPU", DEVICE.format("'CPU'")),
    ("model.name=''", NAME.format("''")),
    ("model.name='  '", NAME.format("'  '")),
])
def test_bad_model_settings_are_one_line_errors(override, message, capsys):
    assert main(["rank", override, "--users", "1"]) == 2
    out, err = capsys.readouterr()
    assert err == message and "Traceback" not in out + err


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_valid_devices_are_accepted(device):
    assert load_config(None, [f"model.device={device!r}".replace("'", '"')]).model.device == device


def _run(path, ranks, source_sha="abc"):
    path.mkdir(parents=True)
    s = {"template": path.name, "scoring": "sum", "source": "c.jsonl", "source_sha256": source_sha}
    (path / "run.json").write_text(json.dumps({"settings": s}))
    with open(path / "ranks.jsonl", "w") as f:
        f.writelines(json.dumps({"user_id": str(u), "rank": r}) + "\n" for u, r in enumerate(ranks))
    return path


@pytest.mark.parametrize("out", ["afile/report", "afile"])
def test_compare_unwritable_out_is_one_line_error(tmp_path, capsys, out):
    a = _run(tmp_path / "a", [1.0, 2.0, 3.0])
    b = _run(tmp_path / "b", [2.0, 2.0, 1.0])
    (tmp_path / "afile").write_text("not a folder")
    target = tmp_path / out
    rc = main(["compare", str(a), str(b), "--out", str(target), "--bootstrap", "50", "--permutations", "50"])
    out_text, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in out_text + err
    why = "Not a directory" if out == "afile/report" else "it exists and is not a folder"
    assert err == f"llmrec: error: {target}: cannot write the comparison report ({why})\n"
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_compare_read_only_out_is_one_line_error(tmp_path, capsys):
    a = _run(tmp_path / "a", [1.0, 2.0])
    b = _run(tmp_path / "b", [2.0, 1.0])
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["compare", str(a), str(b), "--out", str(ro / "report"), "--bootstrap", "20",
                     "--permutations", "20"]) == 2
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err
    assert err.startswith(f"llmrec: error: {ro / 'report'}: cannot write the comparison report (Permission denied")


def test_compare_same_run_twice_is_an_error(tmp_path, capsys, monkeypatch):
    a = _run(tmp_path / "runs" / "a", [1.0, 2.0])
    _run(tmp_path / "runs" / "b", [2.0, 1.0])
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "runs/a", "runs/a", "--out", "rep"]) == 2
    err = capsys.readouterr().err
    assert err == (f"llmrec: error: run directory runs/a is given twice (as runs/a and runs/a, both {a}); "
                   "compare needs distinct runs\n")
    assert main(["compare", "runs/a", "runs/b", "./runs/b/../a/", "--out", "rep"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmrec: error: run directory ./runs/b/../a/ is given twice (as runs/a and "
                          f"./runs/b/../a/, both {a})")
    assert not (tmp_path / "rep").exists()
