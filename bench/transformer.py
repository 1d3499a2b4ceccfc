"""Training speed of the character Transformer of ``examples/char_transformer.py``: barenet against PyTorch.

Both frameworks train the same architecture (pre-norm blocks of causal multi-head self-attention and a GELU
feed-forward, width 128, 4 heads, 4 layers, context 128 by default; learned token and position embeddings,
a final layer normalization and a softmax head over 129 characters) on the same random windows of the
standard library's source, batch 32, float32, AdamW with weight decay 0.01 on the kernels and embeddings
only, learning rate 3e-3 on a cosine over the run. Each framework runs in a child process of its own (its
peak RSS is its own), the frameworks taking turns ``--repeats`` times; the table quotes medians, and
barenet's step time over each peer's is the median of per-turn ratios (a ratio above 1: barenet is slower).

Peers: ``torch`` (eager, ``torch.optim.AdamW`` defaults, attention through
``torch.nn.functional.scaled_dot_product_attention``), ``torch-fused`` (the same with ``AdamW(fused=True)``,
PyTorch's fastest eager configuration here) and, with ``--frameworks ...,torch-compile``, ``torch.compile``
of the fused model (its compilation is untimed; it takes minutes on a small machine, so it is off by default).
Both frameworks take two untimed warm-up steps first. The run also reports the training loss of the last
steps in bits per character, which should agree between the frameworks.

Run::

    python bench/transformer.py                         # 40 steps, 3 turns
    python bench/transformer.py --steps 10 --repeats 1 --layers 2 --width 64 --context 64
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    choose_frameworks,
    machine_line,
    median_turn_ratio,
    peak_rss_mb,
    print_pools,
    run_worker,
    thread_env,
    thread_pools,
)

FRAMEWORKS = ("barenet", "torch", "torch-fused", "torch-compile")
BATCH = 32
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 0.01
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "char_transformer.py"


def example():
    """The example module (data reading and barenet's model)."""
    spec = importlib.util.spec_from_file_location("char_transformer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batches(module, steps: int, context: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same ``steps + 2`` batches of windows for every framework (two for warm-up)."""
    train = module.read_text(module.TRAIN_FILES)
    return module.windows(train, context, (steps + 2) * BATCH, np.random.default_rng(seed))


def train_barenet(args, X, Y) -> dict:
    module = example()
    import barenet as bn

    def make(decay_steps):
        model = module.build_model(args.layers, args.width, args.heads, args.context, dropout=0.0, seed=args.seed,
                                   learning_rate=LEARNING_RATE, decay_steps=decay_steps)
        model.compile(loss="sparse_categorical_crossentropy",
                      optimizer=bn.optimizers.AdamW(bn.optimizers.CosineDecay(LEARNING_RATE, decay_steps),
                                                    weight_decay=WEIGHT_DECAY))
        return model

    warm = make(2)
    warm.fit(X[:2 * BATCH], Y[:2 * BATCH], epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    model = make(args.steps)
    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        part = slice((step + 2) * BATCH, (step + 3) * BATCH)
        history = model.fit(X[part], Y[part], epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
        losses.append(history.history["loss"][-1])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "losses": losses, "params": model.n_params}


def train_torch(args, X, Y, fused: bool = False, compiled: bool = False) -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    width, heads, context = args.width, args.heads, args.context
    vocabulary = example().VOCABULARY

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
            self.qkv, self.proj = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)
            self.up, self.down = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(o.transpose(1, 2).reshape(b, t, width))
            return x + self.down(F.gelu(self.up(self.norm2(x))))

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = torch.nn.Embedding(vocabulary, width)
            self.positions = torch.nn.Parameter(torch.zeros(context, width).uniform_(-0.05, 0.05))
            self.blocks = torch.nn.ModuleList(Block() for _ in range(args.layers))
            self.norm, self.head = torch.nn.LayerNorm(width), torch.nn.Linear(width, vocabulary)

        def forward(self, ids):
            x = self.tokens(ids) + self.positions
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    def make(steps):
        net = LM()
        decay = [p for n, p in net.named_parameters() if n.endswith("weight") and "norm" not in n or
                 n in ("positions",)]
        rest = [p for p in net.parameters() if all(p is not d for d in decay)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                 {"params": rest, "weight_decay": 0}], lr=LEARNING_RATE, fused=fused)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        run = torch.compile(net) if compiled else net
        return net, run, opt, schedule

    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    def step(run, opt, schedule, part):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(run(Xt[part]).reshape(-1, vocabulary), Yt[part].reshape(-1))
        loss.backward()
        opt.step()
        schedule.step()
        return loss.item()

    if compiled:  # the first steps compile the model: untimed, on the model that is then timed
        net, run, opt, schedule = make(args.steps + 2)
        for s in range(2):
            step(run, opt, schedule, slice(s * BATCH, (s + 1) * BATCH))
    else:
        _, run, opt, schedule = make(2)
        for s in range(2):
            step(run, opt, schedule, slice(s * BATCH, (s + 1) * BATCH))
        net, run, opt, schedule = make(args.steps)
    losses = []
    start = time.perf_counter()
    for s in range(args.steps):
        losses.append(step(run, opt, schedule, slice((s + 2) * BATCH, (s + 3) * BATCH)))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "losses": losses, "params": sum(p.numel() for p in net.parameters())}


def worker(args) -> None:
    if args.threads is not None and args.worker.startswith("torch"):
        import torch

        torch.set_num_threads(args.threads)
    X, Y = batches(example(), args.steps, args.context, args.seed)
    if args.worker == "barenet":
        result = train_barenet(args, X, Y)
    else:
        result = train_torch(args, X, Y, fused=args.worker != "torch", compiled=args.worker == "torch-compile")
    result.update(framework=args.worker, peak_rss_mb=peak_rss_mb(), pools=thread_pools())
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--frameworks", default="barenet,torch,torch-fused",
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)}")
    parser.add_argument("--threads", type=int, help="cap every framework's threads at this many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.layers, args.width, args.heads, args.context) < 1:
        parser.error("sizes, --steps and --repeats must be >= 1")
    if args.worker:
        worker(args)
        return 0
    frameworks = choose_frameworks(parser, args.frameworks, FRAMEWORKS)
    passed = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--worker"]
    runs: dict[str, list[dict]] = {f: [] for f in frameworks}
    for repeat in range(args.repeats):
        for framework in frameworks:
            result = run_worker(os.path.abspath(__file__), framework, passed, thread_env(args.threads))
            runs[framework].append(result)
            ms = 1000 * result["seconds"] / args.steps
            print(f"[{repeat + 1}/{args.repeats}] {framework:<13} {ms:8.1f} ms/step  last loss "
                  f"{result['losses'][-1] / math.log(2):.3f} bits/char  RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    print("\n" + machine_line(args.threads))
    print_pools(runs)
    print(f"Transformer LM: {args.layers} layers, width {args.width}, {args.heads} heads, context {args.context}, "
          f"batch {BATCH}, {args.steps} steps, float32, median of {args.repeats} turn(s)")
    header = (f"{'framework':<14} {'ms/step':>8} {'peak RSS MB':>11} {'loss (last 5, bits/char)':>25} "
              f"{'barenet / this':>15}")
    print(header)
    print("-" * len(header))
    ours = runs.get("barenet")
    per_step = lambda r: r["seconds"] / args.steps  # noqa: E731
    for framework, results in runs.items():
        ratio = ""
        if ours is not None and framework != "barenet":
            ratio = f"{median_turn_ratio(ours, results, per_step):.2f}"
        last = statistics.median(np.mean(r["losses"][-5:]) / math.log(2) for r in results)
        print(f"{framework:<14} {1000 * statistics.median(per_step(r) for r in results):>8.1f} "
              f"{max(r['peak_rss_mb'] for r in results):>11.0f} {last:>25.3f} {ratio:>15}")
    print("(barenet / this: median over turns of barenet's step time over the peer's; below 1, barenet is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
