"""Training memory per model size and method, computed from the model's shapes (no GPU needed).

    python scripts/memory_table.py [--tokens 4096] [--rank 16]

Counted, in bytes:
- weights: bf16, 2 per parameter; 4-bit NF4 with double quantisation, about 0.52 per parameter of
  the decoder's linear layers, while embeddings and the LM head stay bf16 (bitsandbytes leaves them);
- LoRA on every linear layer of every block (q, k, v, o, gate, up, down) at rank r: r x (in + out)
  parameters each, 16 bytes per parameter (fp32 weight, gradient, and Adam's two moments);
- activations kept for the backward pass, per token: in each layer the two norms' inputs and
  outputs, q, k, v, the attention output and the four MLP tensors (gate, up, SiLU(gate), product),
  12h + 4h_kv + 8i bytes in bf16 (attention scores not materialised: a fused kernel such as SDPA's
  flash path); the logits 6V (bf16, then fp32 for the loss). With gradient checkpointing a layer
  keeps only its input (2h) and one layer at a time holds its full activations again.
Not counted: the CUDA context and allocator slack (often 0.5-1 GB), the batch's inputs, and
attention scores where a kernel materialises them (e.g. a CPU or an explicit 4D mask).
`--check` prints the same estimate for the embedded SmolLM2-135M in fp32 on this CPU, to set beside
`scripts/bench_train.py`'s measured peaks.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class Shape:
    name: str
    params: float  # all parameters
    hidden: int
    inter: int
    layers: int
    kv: int  # key/value width (heads x head size)
    vocab: int
    tied: bool  # LM head shares the embedding matrix

    @property
    def outer(self) -> float:
        """Embedding and LM head parameters (left unquantised)."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def lora(self, r: int) -> float:
        h, i, kv = self.hidden, self.inter, self.kv
        per_layer = (h + h) + (h + kv) * 2 + (h + h) + (h + i) * 2 + (i + h)  # q, k, v, o, gate, up, down
        return self.layers * r * per_layer

    def activations(self, checkpointing: bool, width: int = 2) -> float:
        """Bytes kept per token (`width` bytes per element: 2 for bf16, 4 for fp32)."""
        layer = (6 * self.hidden + 2 * self.kv + 4 * self.inter) * width
        kept = self.layers * self.hidden * width + layer if checkpointing else self.layers * layer
        return kept + self.vocab * (width + 4)


SHAPES = [
    Shape("Qwen2.5-0.5B", 494e6, 896, 4864, 24, 128, 151936, True),
    Shape("Qwen2.5-1.5B", 1.54e9, 1536, 8960, 28, 256, 151936, True),
    Shape("Llama-3.1-8B", 8.03e9, 4096, 14336, 32, 1024, 128256, False),
]
SMOLLM2 = Shape("SmolLM2-135M", 134.5e6, 576, 1536, 30, 192, 49152, True)


def estimate(s: Shape, method: str, tokens: int, r: int) -> dict[str, float]:
    inner = s.params - s.outer
    weights = inner * 0.52 + s.outer * 2 if method.startswith("QLoRA") else s.params * 2
    lora = s.lora(r) * 16
    acts = tokens * s.activations(checkpointing="checkpointing" in method)
    return {"weights": weights / GIB, "lora": lora / GIB, "activations": acts / GIB,
            "total": (weights + lora + acts) / GIB}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4096, help="tokens per optimizer micro-batch (e.g. 8 x 512)")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank")
    ap.add_argument("--check", type=int, default=0, metavar="TOKENS",
                    help="also the embedded model in fp32 for this many tokens per batch")
    args = ap.parse_args()
    print(f"{args.tokens} tokens per micro-batch, LoRA rank {args.rank} on every linear layer; GiB")
    print("| model | method | weights | LoRA + Adam | activations | total |")
    print("|---|---|---|---|---|---|")
    for s in SHAPES:
        for method in ("LoRA bf16", "LoRA bf16 + checkpointing", "QLoRA 4-bit + checkpointing"):
            e = estimate(s, method, args.tokens, args.rank)
            print(f"| {s.name} | {method} | {e['weights']:.2f} | {e['lora']:.2f} | {e['activations']:.2f} | "
                  f"{e['total']:.2f} |")
    if args.check:
        s = SMOLLM2
        full, ckpt = (args.check * s.activations(c, width=4) / 2**20 for c in (False, True))
        print(f"\n{s.name} fp32, {args.check} tokens: weights {s.params * 4 / 2**20:.0f} MiB, activations "
              f"{full:.0f} MiB without checkpointing, {ckpt:.0f} MiB with it (difference {full - ckpt:.0f} MiB)")


if __name__ == "__main__":
    main()
