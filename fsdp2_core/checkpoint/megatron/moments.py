"""Adam's moments from a Megatron checkpoint, where it keeps them per parameter.

A torch_dist checkpoint of Megatron's distributed optimizer saved with
--dist-ckpt-optim-fully-reshardable, or of its other optimizers, stores for every model tensor `K`
`optimizer.state.exp_avg.K`, `optimizer.state.exp_avg_sq.K` and the fp32 master weights
`optimizer.state.fp32_param.K`, each shaped and laid out as `K` itself; the Adam step is in
common.pt (the param groups' `step`, or `common_step`). They go through the same mapping as the
weights. Megatron's default layout (dp_reshardable) and the legacy format keep per-rank flat
buffers ordered by its gradient buckets instead, which do not map onto parameters: the run then
starts with fresh moments (the caller says so in one line).
"""
from typing import Dict, Optional

import torch

from fsdp2_core.models.build import copy_full_into

from .checkpoint import MegatronCheckpoint
from .detect import DIST

STATE = "optimizer.state."
MOMENTS = ("exp_avg", "exp_avg_sq")


def moment_views(ckpt: MegatronCheckpoint) -> Optional[Dict[str, object]]:
    """{state key: reader of that state by canonical name} when every model tensor has it, else None."""
    if ckpt.format != DIST:
        return None
    model = set(ckpt.reader.names())
    views = {}
    for key in MOMENTS + ("fp32_param",):
        view = ckpt.reader.view(f"{STATE}{key}.")
        names = set(view.names())
        if names != model or any(view.shape(n) != ckpt.reader.shape(n) for n in names):
            if key in MOMENTS:
                return None
            continue
        views[key] = view
    return views


def why_not(ckpt: MegatronCheckpoint) -> str:
    optimizer = ckpt.common.get("optimizer")
    if ckpt.format != DIST:
        return (f"{ckpt.path} is a torch (legacy) checkpoint, whose optimizer state sits in per-rank buffers in "
                "Megatron's parameter-group order; save a torch_dist checkpoint with "
                "--dist-ckpt-optim-fully-reshardable to carry it")
    if not optimizer and not any(k.startswith("optimizer.") for k in ckpt.reader.tensors()):
        return f"{ckpt.path} holds no optimizer state (saved with --no-save-optim)"
    kind = (optimizer or {}).get("param_state_sharding_type", "dp_reshardable")
    return (f"{ckpt.path} stores Megatron's distributed optimizer as {kind} (flat per-rank buffers), not per "
            "parameter; save with --dist-ckpt-optim-fully-reshardable to carry the moments")


def adam_step(ckpt: MegatronCheckpoint) -> Optional[int]:
    """The one Adam step of the saved optimizer(s): the param groups' `step` (distributed optimizer) or
    `common_step` (Megatron's other optimizers), wherever chained optimizers nest them."""
    steps = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "common_step" and value is not None:
                    steps.add(int(value))
                elif key == "param_groups" and isinstance(value, list):
                    steps.update(int(g["step"]) for g in value if isinstance(g, dict) and g.get("step") is not None)
                else:
                    walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)
    walk(ckpt.common.get("optimizer"))
    return steps.pop() if len(steps) == 1 else None


def restore_moments(ckpt: MegatronCheckpoint, model, optimizer, groups) -> Optional[str]:
    """Fill `optimizer`'s Adam state (and the fp32 master weights) from the checkpoint; None when done, else why not."""
    views = moment_views(ckpt)
    step = adam_step(ckpt) if views else None
    if views is None or step is None:
        return why_not(ckpt) if views is None else f"{ckpt.path} names no single Adam step in its optimizer state"
    params = dict(model.named_parameters(remove_duplicate=False))
    for group in groups:
        converted = {key: group.to_hf({n: view.get(n) for n in group.mg}) for key, view in views.items()}
        for name in group.hf:
            p = params.get(name)
            if p is None or not p.requires_grad:
                continue
            if "fp32_param" in converted:
                copy_full_into(p, converted["fp32_param"][name])
            state = optimizer.state[p]
            state["step"] = torch.tensor(float(step), dtype=torch.float32)
            for key in MOMENTS:
                buf = torch.zeros_like(p, memory_format=torch.preserve_format)
                copy_full_into(buf, converted[key][name])
                state[key] = buf
    return None
