"""Resolve a model name: an embedded asset, a local folder, or a Hugging Face id."""

from __future__ import annotations

from pathlib import Path

from llmrec import assets


def resolve_model(name: str) -> str:
    """Embedded asset names are fetched (or found in the cache); other names pass through."""
    if name in assets.ASSETS and assets.ASSETS[name].kind == "model":
        return str(assets.fetch(name))
    return str(Path(name)) if Path(name).exists() else name


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str):
    """bf16 on GPU (fp16 where bf16 is unsupported), fp32 on CPU unless asked otherwise."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))
