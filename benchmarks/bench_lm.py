"""Tokens per second of `losslab lm`'s training loop against a hand-written nanoGPT-style loop on the same model
(the default gpt: 4 layers, 4 heads, 128 wide), batch (12 windows of 64 characters), data (tiny Shakespeare),
optimizer (AdamW 1e-3, clipping 1.0) and evaluations (the same fixed validation windows every --eval-every steps),
in one process, in alternating pairs. Prints each pair's ratio, the median (target >= 0.95) and checks the final
weights are bit-identical. Then what stacking would give: the gradients of K gpt runs (different weights, one
batch) through torch.func (vmap over functional_call, attention on its math kernel) against K backward passes one
by one — language-model trials train one by one because this ratio is below 1 on a CPU.
Run: .venv/bin/python benchmarks/bench_lm.py [--pairs 6] [--steps 200] [--runs 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

EVAL_EVERY, EVAL_BATCHES = 50, 2


def config(steps: int) -> Any:
    from losslab.config.lm import LMConfig, LMDataConfig, SampleConfig
    from losslab.config.parts import OptimConfig, TrainConfig

    return LMConfig(data=LMDataConfig(eval_every=EVAL_EVERY, eval_batches=EVAL_BATCHES),
                    optim=OptimConfig("adamw", lr=1e-3), sample=SampleConfig(tokens=0),
                    train=TrainConfig(epochs=steps // EVAL_EVERY, batch_size=12, clip_grad_norm=1.0,
                                      device="cpu")).resolved()


def losslab_loop(problem: Any, cfg: Any) -> tuple[float, Any]:
    """`losslab lm`'s run with its quiet display and consumers: the training time (evaluations included)."""
    from losslab.commands import lm
    from losslab.outputs import OutputContext, dispatcher
    from losslab.outputs.display import ProgressDisplay, classify_columns, make_console

    display = ProgressDisplay(make_console(), classify_columns(), quiet=True)
    result = lm.run(cfg, dispatcher(OutputContext("lm", cfg, quiet=True), [display]), problem)
    return result.elapsed_s, result.model


def hand_loop(problem: Any, cfg: Any) -> tuple[float, Any]:
    """nanoGPT's train.py loop written out: get_batch from a seeded generator, forward, cross-entropy, backward,
    clip, AdamW step; every EVAL_EVERY steps the loss on the fixed validation windows, under no_grad."""
    from losslab.components.lm_models import build_lm

    ids, block, batch = problem.source.ids, cfg.data.block_size, cfg.train.batch_size
    torch.manual_seed(cfg.train.seed)
    model = build_lm("gpt", problem.shape())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    g = torch.Generator().manual_seed(cfg.train.seed)
    offsets = torch.arange(block)
    start = time.perf_counter()
    for step in range(1, cfg.train.epochs * EVAL_EVERY + 1):
        index = torch.randint(len(ids) - block, (batch,), generator=g)[:, None] + offsets
        x, y = ids[index], ids[index + 1]
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % EVAL_EVERY == 0:
            model.eval()
            with torch.no_grad():
                out = model(problem.x_val)
                float(torch.nn.functional.cross_entropy(out.view(-1, out.size(-1)), problem.y_val.view(-1)))
            model.train()
    return time.perf_counter() - start, model


def stacking_ratio(problem: Any, runs: int, pairs: int) -> list[float]:
    """Time of K forward-backward passes one by one over the time of one vmap'd pass of the K runs."""
    import copy

    from torch.func import functional_call, grad, stack_module_state, vmap
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from losslab.components.lm_models import build_lm

    torch.manual_seed(0)
    first = build_lm("gpt", problem.shape())
    models = [copy.deepcopy(first) for _ in range(runs)]
    for i, m in enumerate(models):
        torch.manual_seed(i)
        for p in m.parameters():
            p.data.normal_(0, 0.02)
    x, y = problem.source.draw(12, torch.Generator().manual_seed(0))
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    skeleton = copy.deepcopy(first).to("meta")
    vocab = problem.vocab

    def loss(p: Any, b: Any) -> Any:
        out = functional_call(skeleton, (p, b), (x,))
        return torch.nn.functional.cross_entropy(out.reshape(-1, vocab), y.reshape(-1))

    def stacked() -> None:
        with sdpa_kernel(SDPBackend.MATH):
            vmap(grad(loss))(params, buffers)

    def one_by_one() -> None:
        for m in models:
            m.zero_grad()
            out = m(x)
            torch.nn.functional.cross_entropy(out.reshape(-1, vocab), y.reshape(-1)).backward()

    stacked(), one_by_one()
    ratios = []
    for _ in range(pairs):
        t = time.perf_counter()
        one_by_one()
        single = time.perf_counter() - t
        t = time.perf_counter()
        stacked()
        ratios.append(single / (time.perf_counter() - t))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    from losslab.engine.lm_problem import LMProblem

    cfg = config(args.steps)
    problem = LMProblem(cfg)
    tokens = args.steps * cfg.train.batch_size * cfg.data.block_size
    hand_loop(problem, config(EVAL_EVERY))  # warm-up: first-call costs (the optimizer's import) on neither side
    ratios = []
    for i in range(args.pairs):
        t_hand, reference = hand_loop(problem, cfg)
        t_ours, ours = losslab_loop(problem, cfg)
        ratios.append(t_hand / t_ours)  # tokens/s of ours over the hand loop's
        print(f"pair {i + 1}: hand {tokens / t_hand:,.0f} tok/s ({t_hand / args.steps * 1000:.1f} ms/step), losslab "
              f"{tokens / t_ours:,.0f} tok/s ({t_ours / args.steps * 1000:.1f} ms/step), ratio {ratios[-1]:.3f}")
    same = all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), reference.state_dict().values()))
    print(f"losslab lm tokens/s / hand-written loop's: median {statistics.median(ratios):.3f} over {args.pairs} "
          f"pairs (min {min(ratios):.3f}, max {max(ratios):.3f}; target >= 0.95); final weights bit-identical: {same}")
    stacking = stacking_ratio(problem, args.runs, 4 * args.pairs)
    print(f"stacking {args.runs} gpt runs (vmap) vs one by one, forward-backward: {statistics.median(stacking):.2f}x "
          f"the speed, median of {len(stacking)} pairs (min {min(stacking):.2f}, max {max(stacking):.2f}; below 1: "
          "stacked is slower, so lm trials train one by one)")


if __name__ == "__main__":
    main()
