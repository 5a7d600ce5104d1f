#!/usr/bin/env python
"""Activation and logits bytes per rank under tensor parallelism (CPU ranks, gloo, fp32): measured, not assumed.

    python bench/bench_tp_memory.py [--tp 1 2 4] [--vocab 65536] [--seq 1024] [--json out.json]

One forward and backward of a Llama-shaped model with a large vocabulary, on each of
tp_size ranks. Counted per rank (fsdp2_core/testing/tensors.py):
  - the bytes autograd saves for backward, by the module that saved them (norms,
    attention, MLP, embedding, output layer) and the loss, once per storage;
  - the largest logits tensor any operator creates ([tokens, V] or this rank's [tokens, V/tp]).
Plans compared at each tp_size:
  before   the plan before issue #19: column/row-parallel projections from the glob patterns,
           norms and the residual stream whole on every rank, the output layer whole, full
           logits and the plain cross entropy on every rank;
  no-sp    this plan with sequence_parallel false: vocabulary-parallel embedding, output
           layer and loss, norms whole;
  sp       this plan (the default): the above plus sequence parallelism.
"""
import argparse
import json
import os
import tempfile

import torch

ARCH = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 2,
        "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 4096,
        "tie_word_embeddings": False}
PLANS = ("before", "no-sp", "sp")


def categorize(name: str, module) -> str:
    from fsdp2_core.parallel.tensor_parallel import is_norm
    if is_norm(module):
        return "norms"
    leaf = name.rpartition(".")[2]
    return {"self_attn": "attention", "mlp": "mlp", "embed_tokens": "embedding", "lm_head": "output layer"}.get(leaf)


def plan_before_issue_19(model, tp_mesh, colwise, rowwise) -> None:
    """The tensor-parallel plan the engine applied before this issue (kept here to measure against)."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    from fsdp2_core.parallel.patterns import matching_modules
    plan = {name: ColwiseParallel() for name, _ in matching_modules(model, colwise)}
    plan.update({name: RowwiseParallel() for name, _ in matching_modules(model, rowwise)})
    parallelize_module(model, tp_mesh, plan)


def measure(run: tuple) -> dict:
    """On every rank: build, split per `plan`, one forward (counted) and backward; this rank's figures."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from fsdp2_core.models.build import build_model
    from fsdp2_core.parallel.tensor_parallel import apply_tensor_parallel
    from fsdp2_core.testing.tensors import SavedActivations, TensorLog
    from fsdp2_core.testing.tiny import tiny_config
    from fsdp2_core.train.loss import install_loss

    plan, vocab, seq, tmp = run
    dist.init_process_group("gloo")
    tp = dist.get_world_size()
    cfg = tiny_config(tmp, architecture=dict(ARCH, vocab_size=vocab), cutoff_len=seq)
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=0)
    if tp > 1:
        mesh = init_device_mesh("cpu", (tp,), mesh_dim_names=("tp",))
        p = cfg.parallel
        if plan == "before":
            plan_before_issue_19(model, mesh, p.tp_colwise, p.tp_rowwise)
        else:
            apply_tensor_parallel(model, mesh, p.tp_colwise, p.tp_rowwise, sequence_parallel=plan == "sp")
    install_loss(model)
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, vocab, (1, seq + 1), generator=g)
    saved = SavedActivations(model, categorize)
    with saved, TensorLog() as log:
        with saved.section("loss"):
            total, count = model.lm_loss(text[:, :-1], text[:, 1:], torch.ones(1, seq),
                                         position_ids=torch.arange(seq)[None])
        (total / count).backward()
    # fp32 logits: the whole vocabulary, or this rank's slice of it, for every token
    logits = max((seq * width * 4 for width in {vocab, -(-vocab // tp)} if log.with_last_dim(width, seq)), default=0)
    result = {"loss": (total / count).item(), "saved": dict(saved.bytes), "largest_logits_bytes": logits}
    dist.destroy_process_group()
    return result


def run(tp_sizes, vocab: int, seq: int) -> dict:
    from fsdp2_core.testing.spawn import spawn_runs
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tp in tp_sizes:
            plans = PLANS if tp > 1 else ("unsplit",)
            by_rank = spawn_runs(tp, measure, [(plan, vocab, seq, os.path.join(tmp, f"{plan}{tp}")) for plan in plans],
                                 timeout=1800)
            for i, plan in enumerate(plans):
                per_rank = [runs[i] for runs in by_rank]
                r0 = per_rank[0]
                saved = r0["saved"]
                agree = all(abs(r["loss"] - r0["loss"]) < 1e-4 * abs(r0["loss"]) for r in per_rank)
                rows.append({"tp": tp, "plan": plan, "loss": r0["loss"], "saved": saved,
                             "saved_total": sum(saved.values()), "largest_logits_bytes": r0["largest_logits_bytes"],
                             "ranks_agree": agree})
                print(json.dumps(rows[-1]), flush=True)
    return {"arch": dict(ARCH, vocab_size=vocab), "seq": seq, "batch": 1, "rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tp", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    result = run(args.tp, args.vocab, args.seq)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
