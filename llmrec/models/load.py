"""Models by name (an embedded asset, a local folder or a Hugging Face id): the one place that
loads weights, tokenizers and adapters, and resolves devices and dtypes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
            "float64": torch.float64}[dtype]


def resolved_dtype(model) -> str:
    """`model.dtype` (of a `ModelConfig`) as this process's device runs it: "auto" is bf16 on a
    GPU, fp32 on a CPU."""
    return str(pick_dtype(model.dtype, pick_device(model.device))).removeprefix("torch.")


def load_tokenizer(name: str, adapter: str = ""):
    """The model's tokenizer, or the one an adapter saved with tokens it added (semantic-ID codes)."""
    from transformers import AutoTokenizer

    if adapter and (Path(adapter) / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(adapter)
    return AutoTokenizer.from_pretrained(resolve_model(name))


def quantization_config(quantization: str) -> Any:
    """transformers' bitsandbytes settings for "4bit" (NF4, double quantisation, bf16 compute: QLoRA)
    or "8bit"; None for "none". Refused in one line where bitsandbytes cannot run: its kernels need
    an NVIDIA GPU, and the package itself is an optional install."""
    import importlib.util

    import torch

    from llmrec.errors import ConfigError

    if quantization == "none":
        return None
    if not torch.cuda.is_available():
        raise ConfigError(f"train.quantization={quantization} loads the base weights through bitsandbytes, whose "
                          "kernels need an NVIDIA GPU (CUDA); this machine has none: train without quantization "
                          "(train.quantization=none) here")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"train.quantization={quantization} needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_model(name: str, adapter: str = "", *, device: str = "auto", dtype: Any = "auto", trainable: bool = False,
               collaborative: bool = True, quantization: str = "none"):
    """The one model loader: the base weights (`resolve_model`) at `dtype` ("auto": bf16 on a GPU,
    fp32 on a CPU, or a torch dtype), a peft `adapter` on top (LoRA or prompt-tuning; trainable
    when `trainable`), and the adapter's collaborative-token projector when it has one and
    `collaborative` is set (`llmrec.models.cf`). Returned on the device, in eval mode unless
    trainable. `quantization` ("4bit", "8bit") loads the base weights quantised by bitsandbytes,
    straight onto the GPU. A name that is neither a folder nor a reachable Hub id is a ConfigError."""
    import torch
    from transformers import AutoModelForCausalLM

    from llmrec.errors import ConfigError

    where = pick_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else pick_dtype(dtype, where)
    quantized = quantization_config(quantization)
    placed = {"quantization_config": quantized, "device_map": {"": where}} if quantized is not None else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype, **placed)
    except (OSError, ValueError) as e:  # transformers' "not a model folder / not a Hub id"
        raise ConfigError(f"model.name {name!r}: cannot load ({str(e).splitlines()[0]})") from None
    if adapter:
        from peft import PeftModel

        added = len(load_tokenizer(name, adapter)) - model.get_input_embeddings().num_embeddings
        if added > 0:  # an adapter that trained new tokens (semantic IDs) brings their rows
            model.resize_token_embeddings(model.get_input_embeddings().num_embeddings + added, mean_resizing=False)
        model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
        if collaborative:
            from llmrec.models import cf

            if cf.has_cf(adapter):
                cf.attach(model, cf.load_table(adapter)).to(torch_dtype)
    if quantized is None:  # quantised weights are placed by from_pretrained and cannot move
        model = model.to(where)
    return model.train() if trainable else model.eval()
