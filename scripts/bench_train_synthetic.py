"""LoRA training throughput and peak memory on random weights of a 0.5B-shaped model (no downloads).

A Qwen2.5-0.5B-shaped decoder (hidden 896, MLP 4864, 24 layers, 14 heads, 2 key/value heads,
vocabulary 151,936) is built with random weights, LoRA of rank 16 goes on every linear layer of
every block (peft), and `--steps` optimizer steps run on random token batches of `--batch` x
`--length`, with the loss on the last quarter of each row (an answer), in bf16 autocast on a GPU
(fp32 on a CPU), without and with gradient checkpointing, each in its own process. Printed per
condition: tokens/s, peak memory (CUDA's max allocated on a GPU, the process's peak RSS on a CPU;
both include the weights), and the ratios.
Part of scripts/gpu_check.sh; `--layers 2` makes a quick CPU run.

    python scripts/bench_train_synthetic.py [--steps 10] [--batch 8] [--length 512] [--layers 24]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def peak_mib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(args, checkpointing: bool) -> dict[str, float]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=args.layers,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         max_position_embeddings=4096, tie_word_embeddings=True, use_cache=False)
    model = Qwen2ForCausalLM(config).to(device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.length), device=device)
    labels = ids.clone()
    labels[:, : 3 * args.length // 4] = -100
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    started = None
    for step in range(args.steps + 1):  # the first step warms up and is not timed
        if step == 1:
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        with autocast:
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"tokens_per_s": args.steps * args.batch * args.length / seconds, "peak_mib": peak_mib(device),
            "device": device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--layers", type=int, default=24, help="decoder layers (24: Qwen2.5-0.5B)")
    ap.add_argument("--only", choices=["off", "on"], help=argparse.SUPPRESS)  # one condition, in its own process
    args = ap.parse_args()
    if args.only:
        print(json.dumps(run(args, args.only == "on")))
        return
    out = {}
    for label in ("off", "on"):  # each in its own process, so that each peak is its own
        cmd = [sys.executable, __file__, *sys.argv[1:], "--only", label]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        out[label] = r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"0.5B-shaped LoRA r16, {args.layers} layers, {args.batch}x{args.length} tokens, {r['device']}, "
              f"checkpointing {label}: {r['tokens_per_s']:.0f} tokens/s, peak {r['peak_mib']:.0f} MiB", flush=True)
    print(f"checkpointing on / off: tokens/s x{out['on']['tokens_per_s'] / out['off']['tokens_per_s']:.2f}, "
          f"peak memory x{out['on']['peak_mib'] / out['off']['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
