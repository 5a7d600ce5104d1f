"""Evaluation: `eval_iters` global batches of a split, loss reduced as in training."""
import torch
import torch.distributed as dist

from .step import forward_sums


@torch.no_grad()
def evaluate(ctx, batches, eval_iters: int) -> float:
    """Mean LM loss over `eval_iters` global batches drawn from the iterator `batches`."""
    ctx.model.eval()
    num = torch.zeros((), dtype=torch.float64)
    den = torch.zeros((), dtype=torch.float64)
    per_token = ctx.cfg.training.calculate_per_token_loss
    for _ in range(eval_iters):
        for _ in range(ctx.grad_accum):
            s, n = forward_sums(ctx, next(batches))
            num += float(s) if per_token else float(s) / max(float(n), 1.0)
            den += float(n) if per_token else 1.0
    ctx.model.train()
    pair = torch.stack([num, den])
    if ctx.mesh.dims.dp > 1:
        dist.all_reduce(pair, group=ctx.mesh.dp_group)
    return float(pair[0] / pair[1])
