import json

from llmrec.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for command in ("assets", "prepare"):
        assert command in out


def test_prepare_writes_files_and_prints_config(tmp_path, capsys, ml100k):
    out_dir = tmp_path / "run"
    rc = main(["prepare", "--config", "scripts/configs/ml100k.toml", f"out_dir={out_dir}",
               "candidates.kinds=['sampled']", "candidates.stages=['test']", "candidates.seed=5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "# resolved config" in out and "seed = 5" in out
    assert "users                                    943               943" in out
    stats = json.loads((out_dir / "stats.json").read_text())
    assert stats["before_filtering"]["interactions"] == 100000
    assert sorted(p.name for p in (out_dir / "candidates").iterdir()) == ["sampled-20.test.jsonl"]
    assert "seed = 5" in (out_dir / "config.toml").read_text()


def test_bad_config_is_one_line_error(capsys):
    assert main(["prepare", "candidates.sed=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmrec: error: unknown config key 'candidates.sed'")
