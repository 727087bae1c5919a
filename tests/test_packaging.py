"""Templates and the default config are package data: found in a checkout and in an installed wheel."""

import importlib.resources
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import llmrec
from llmrec.config import Config, load_config
from llmrec.prompts.render import list_templates, load_template, templates_dir

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["letters/candidates_cf_chat_v1", "letters/candidates_cf_only_v1", "letters/candidates_cf_v1",
           "letters/candidates_chat_v1", "letters/candidates_v1", "sid/next_item_titles_v1", "sid/next_item_v1",
           "title/catalogue_chat_v1", "title/catalogue_v1", "title/next_item_chat_v1",
           "title/next_item_genres_chat_v1", "title/next_item_genres_v1", "title/next_item_v1",
           "yesno/will_like_cf_chat_v1", "yesno/will_like_cf_v1", "yesno/will_like_chat_v1", "yesno/will_like_v1"]
FROM_CHECKOUT = Path(llmrec.__file__).resolve().parent == REPO / "llmrec"


@pytest.mark.skipif(not FROM_CHECKOUT, reason="llmrec is not imported from this checkout")
def test_checkout_templates_and_configs_are_the_package_data():
    assert templates_dir() == importlib.resources.files("llmrec.templates")
    assert templates_dir().resolve() == REPO / "templates"
    default = importlib.resources.files("llmrec.configs") / "ml100k.toml"
    assert Path(str(default)).resolve() == REPO / "scripts" / "configs" / "ml100k.toml"
    assert list_templates() == SHIPPED


def test_default_config_is_the_packaged_ml100k_toml(tmp_path, monkeypatch):
    """No --config loads the packaged file; the dataclass defaults are kept equal to it."""
    assert load_config(None) == Config() == load_config(REPO / "scripts" / "configs" / "ml100k.toml")
    (tmp_path / "ml100k.toml").write_text('out_dir = "runs/elsewhere"\n[candidates]\nn = 7\n')
    real_files = importlib.resources.files
    monkeypatch.setattr(importlib.resources, "files",
                        lambda pkg: tmp_path if pkg == "llmrec.configs" else real_files(pkg))
    cfg = load_config(None, ["candidates.seed=3"])
    assert (cfg.out_dir, cfg.candidates.n, cfg.candidates.seed) == ("runs/elsewhere", 7, 3)


def test_load_template_still_takes_a_path(tmp_path):
    p = tmp_path / "mine_v1.j2"
    p.write_text("{#\nstyle: letters\n#}\nPick one {{ item_noun }}.")
    t = load_template(str(p))
    assert (t.name, t.style, t.render(item_noun="film")) == (str(p), "letters", "Pick one film.")
    assert load_template(str(templates_dir() / "title" / "next_item_v1.j2")).source == \
        load_template("title/next_item_v1").source


PROBE = """
import json, llmrec
from llmrec.config import Config, load_config
from llmrec.prompts.render import list_templates, load_template, templates_dir
t = load_template("title/next_item_v1")
print(json.dumps({
    "llmrec": llmrec.__file__, "dir": str(templates_dir()), "templates": list_templates(),
    "style": t.style, "path": str(t.path),
    "text": t.render(history=[{"title": "Heat"}], item_noun="film"),
    "target": t.render_target({"title": "Heat"}),
    "config_ok": load_config(None) == Config(), "out_dir": load_config(None).out_dir,
}))
"""


@pytest.mark.slow
def test_wheel_ships_templates_and_configs(tmp_path):
    """A plain (non-editable) install finds the templates and the default config without the checkout."""
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    # Build from a copy: an in-tree build/ folder would keep stale modules for later wheels.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "runs", "out", "__pycache__", "*.egg-info", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels)], check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("llmrec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"llmrec/templates/{n}.j2" for n in SHIPPED} <= names
    assert {"llmrec/configs/ml100k.toml", "llmrec/configs/train_cpu_lora.toml"} <= names
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "llmrec").rglob("*.py")}
    assert modules <= names, f"modules missing from the wheel (pyproject packages list): {modules - names}"
    assert not any(n.startswith(("tests/", "scripts/", "templates/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, timeout=120, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True, text=True,
                         check=False,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["llmrec"] == str(target / "llmrec" / "__init__.py")
    assert got["dir"] == str(target / "llmrec" / "templates")
    assert got["templates"] == SHIPPED
    assert got["path"] == str(target / "llmrec" / "templates" / "title" / "next_item_v1.j2")
    assert got["style"] == "title" and got["target"] == "Heat"
    assert got["text"] == ("Here are the films a user watched, oldest first:\n- Heat\n"
                           "The next film this user will watch is:")
    assert got["config_ok"] and got["out_dir"] == "runs/ml-100k"
