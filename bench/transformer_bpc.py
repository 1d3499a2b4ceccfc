"""Validation bits per character of ``examples/char_transformer.py`` beside PyTorch training the same network.

The question this answers is not speed but correctness at scale: trained the same way, does barenet's
Transformer learn as well as PyTorch's? Both frameworks start from the same weights (barenet's initial
weights copied into ``torch.nn.TransformerEncoderLayer`` blocks, ``norm_first=True``, GELU, causal mask),
see the same windows of the standard library's source in the same order, and follow the same schedule:
AdamW (learning rate 3e-3 on a cosine over the run, weight decay 0.01 on kernels and embeddings only,
epsilon 1e-7), batch 32, dropout 0.1 at the same four places in every block (each framework draws its own
masks). Afterwards both are evaluated on the same validation windows, in bits per character, beside the
example's bigram baseline. The frameworks run one after the other in this process.

Run::

    python bench/transformer_bpc.py                    # 1,000 steps of the example's 4 x 128 network
    python bench/transformer_bpc.py --steps 50 --layers 2 --width 64 --context 64
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np
from common import machine_line, thread_pools

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "char_transformer.py"
BATCH = 32
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 0.01
EPSILON = 1e-7
CHUNK = 50  # steps of windows drawn at a time, as the example draws them


def example():
    spec = importlib.util.spec_from_file_location("char_transformer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chunks(module, train: np.ndarray, args):
    """The example's stream of training windows: ``CHUNK`` steps' worth at a time from one seeded generator."""
    rng = np.random.default_rng(args.seed)
    done = 0
    while done < args.steps:
        n = min(CHUNK, args.steps - done)
        yield module.windows(train, args.context, n * BATCH, rng)
        done += n


def build_torch(model, vocabulary: int, args):
    import torch

    import barenet as bn

    width, heads = args.width, args.heads

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = torch.nn.Embedding(vocabulary, width)
            self.positions = torch.nn.Parameter(torch.zeros(args.context, width))
            self.blocks = torch.nn.ModuleList(
                torch.nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=args.dropout, activation="gelu",
                                                 batch_first=True, norm_first=True)
                for _ in range(args.layers))
            self.norm, self.head = torch.nn.LayerNorm(width), torch.nn.Linear(width, vocabulary)
            self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(args.context))

        def forward(self, ids):
            x = self.tokens(ids) + self.positions[:ids.shape[1]]
            for block in self.blocks:
                x = block(x, src_mask=self.mask, is_causal=True)
            return self.head(self.norm(x))

    net = LM()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    L = bn.layers
    of = lambda kind: [lyr for lyr in model.layers if isinstance(lyr, kind)]  # noqa: E731
    embedding, = of(L.TokenAndPositionEmbedding)
    attention, norms, dense = of(L.MultiHeadAttention), of(L.LayerNormalization), of(L.Dense)
    with torch.no_grad():
        net.tokens.weight.copy_(t(embedding.params["token_embeddings"]))
        net.positions.copy_(t(embedding.params["position_embeddings"]))
        for i, block in enumerate(net.blocks):
            mha, (n1, n2), (up, down) = attention[i], norms[2 * i:2 * i + 2], dense[2 * i:2 * i + 2]
            block.self_attn.in_proj_weight.copy_(t(np.concatenate(
                [mha.params[f"{n}_kernel"].reshape(width, width).T for n in ("query", "key", "value")])))
            block.self_attn.in_proj_bias.copy_(t(np.concatenate(
                [mha.params[f"{n}_bias"].reshape(-1) for n in ("query", "key", "value")])))
            block.self_attn.out_proj.weight.copy_(t(mha.params["output_kernel"].reshape(width, width).T))
            block.self_attn.out_proj.bias.copy_(t(mha.params["output_bias"]))
            for mine, theirs in ((n1, block.norm1), (n2, block.norm2)):
                theirs.weight.copy_(t(mine.params["gamma"]))
                theirs.bias.copy_(t(mine.params["beta"]))
            for mine, theirs in ((up, block.linear1), (down, block.linear2)):
                theirs.weight.copy_(t(mine.params["kernel"].T))
                theirs.bias.copy_(t(mine.params["bias"]))
        net.norm.weight.copy_(t(norms[-1].params["gamma"]))
        net.norm.bias.copy_(t(norms[-1].params["beta"]))
        net.head.weight.copy_(t(dense[-1].params["kernel"].T))
        net.head.bias.copy_(t(dense[-1].params["bias"]))
    assert len(attention) == args.layers and len(norms) == 2 * args.layers + 1 and len(dense) == 2 * args.layers + 1
    return net


def train_barenet(module, train, valid, args) -> dict:
    model = module.build_model(args.layers, args.width, args.heads, args.context, dropout=args.dropout,
                               seed=args.seed, learning_rate=LEARNING_RATE, decay_steps=args.steps)
    start = time.perf_counter()
    for X, Y in chunks(module, train, args):
        model.fit(X, Y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "bpc": module.bits_per_char(model, valid, args.context)}


def train_torch(module, train, valid, args) -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    initial = module.build_model(args.layers, args.width, args.heads, args.context, dropout=args.dropout,
                                 seed=args.seed)
    net = build_torch(initial, module.VOCABULARY, args)
    decay = [p for n, p in net.named_parameters()
             if n.endswith("weight") and "norm" not in n or n == "positions"]
    rest = [p for p in net.parameters() if all(p is not d for d in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0}],
                            lr=LEARNING_RATE, eps=EPSILON, fused=True)
    steps = args.steps
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    net.train()
    start = time.perf_counter()
    for X, Y in chunks(module, train, args):
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
        for s in range(0, len(X), BATCH):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(Xt[s:s + BATCH]).reshape(-1, module.VOCABULARY), Yt[s:s + BATCH].reshape(-1))
            loss.backward()
            opt.step()
            schedule.step()
    seconds = time.perf_counter() - start
    net.eval()
    n = min(64, (len(valid) - 1) // args.context)
    index = np.arange(n)[:, None] * args.context + np.arange(args.context)
    with torch.no_grad():
        logits = net(torch.from_numpy(valid[index]))
        loss = F.cross_entropy(logits.reshape(-1, module.VOCABULARY), torch.from_numpy(valid[index + 1]).reshape(-1))
    return {"seconds": seconds, "bpc": loss.item() / math.log(2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frameworks", default="barenet,torch", help="barenet, torch or both (default both)")
    args = parser.parse_args(argv)
    if min(args.steps, args.layers, args.width, args.heads, args.context) < 1 or not 0 <= args.dropout < 1:
        parser.error("sizes and --steps must be >= 1, --dropout in [0, 1)")
    module = example()
    train, valid = module.read_text(module.TRAIN_FILES), module.read_text(module.VALIDATION_FILES)
    print(machine_line())
    print(f"network: {args.layers} layers, width {args.width}, {args.heads} heads, context {args.context}, "
          f"dropout {args.dropout}; {args.steps} steps of batch {BATCH}; {len(train):,} training and "
          f"{len(valid):,} validation characters")
    print(f"bigram baseline: {module.bigram_bits_per_char(train, valid):.3f} bits/char")
    results = {}
    for framework in args.frameworks.split(","):
        run = {"barenet": train_barenet, "torch": train_torch}.get(framework)
        if run is None:
            parser.error(f"unknown framework {framework!r}; expected barenet or torch")
        results[framework] = run(module, train, valid, args)
        r = results[framework]
        print(f"{framework:<8} validation {r['bpc']:.3f} bits/char after {args.steps} steps "
              f"({r['seconds']:.0f} s, {1000 * r['seconds'] / args.steps:.0f} ms/step)", flush=True)
    print("thread pools: " + "; ".join(thread_pools()))
    if len(results) == 2:
        print(f"difference (barenet - torch): {results['barenet']['bpc'] - results['torch']['bpc']:+.3f} bits/char")
    return 0


if __name__ == "__main__":
    sys.exit(main())
