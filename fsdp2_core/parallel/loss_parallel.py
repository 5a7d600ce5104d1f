"""Vocabulary-parallel cross entropy: the loss over logits sharded on the vocabulary (Megatron's way).

Under tensor parallelism the output layer is column-parallel: each rank holds the logits
of its slice of the vocabulary, [tokens, V/tp], and no rank ever builds [tokens, V]. The
loss needs three numbers per token from the whole vocabulary, all-reduced over the
tensor-parallel group (two all-reduces): the maximum logit (for a stable exp), the sum
of exp, and the target's logit (held by exactly one rank). Then

    loss = log(Σ_v exp(z_v − max)) − (z_target − max)

plus, with the z-loss, coeff × logsumexp², as the plain loss adds it. Backward needs no
communication: the gradient of the local logits is softmax − one-hot (and the z-loss's
2 · coeff · logsumexp · softmax) restricted to this rank's slice, from the saved local
softmax. Targets equal to `ignore_index` (−100, as in `F.cross_entropy`) get no cross
entropy and no gradient from it.
DTensor's `loss_parallel` does the same, but needs the backward inside its context
manager and a DTensor loss; this function returns a plain per-token tensor, so the
masking, chunking and normalisation of train/loss.py stay as they are.
"""
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate

IGNORE_INDEX = -100


@dataclass(frozen=True)
class VocabShard:
    """This rank's slice of the vocabulary: rows [start, start + local) of the output layer."""
    group: object
    vocab_size: int
    rank: int
    size: int

    @property
    def start(self) -> int:
        """DTensor's Shard(0) cuts like torch.chunk: ceil(V / tp) rows per rank, the last ones shorter."""
        per_rank = -(-self.vocab_size // self.size)
        return min(self.rank * per_rank, self.vocab_size)


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, start: int, group, z_loss: float) -> torch.Tensor:
        logits = logits.float()
        local = logits.shape[-1]
        row_max = logits.max(dim=-1).values if local else logits.new_full(logits.shape[:-1], float("-inf"))
        dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        shifted = logits - row_max.unsqueeze(-1)

        in_slice = (target >= start) & (target < start + local)
        local_target = torch.where(in_slice, target - start, torch.zeros_like(target))
        picked = shifted.gather(-1, local_target.unsqueeze(-1)).squeeze(-1) if local else torch.zeros_like(row_max)
        picked = torch.where(in_slice, picked, torch.zeros_like(picked))
        exp = shifted.exp_()
        sum_exp = exp.sum(dim=-1)
        both = torch.stack([picked, sum_exp])
        dist.all_reduce(both, group=group)
        picked, sum_exp = both[0], both[1]

        counted = (target != IGNORE_INDEX).float()   # ignored targets: no cross entropy (the z-loss stays)
        log_sum = sum_exp.log()
        loss = counted * (log_sum - picked)
        lse = log_sum + row_max
        if z_loss:
            loss = loss + z_loss * lse.square()
        softmax = exp.div_(sum_exp.unsqueeze(-1))
        ctx.z_loss = z_loss
        ctx.save_for_backward(softmax, in_slice, local_target, counted, lse)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        softmax, in_slice, local_target, counted, lse = ctx.saved_tensors
        # d loss / d z_v = counted · (softmax_v − [v = target]) + 2 · z_loss · lse · softmax_v
        scale = counted + 2 * ctx.z_loss * lse if ctx.z_loss else counted
        grad = softmax.mul_(scale.unsqueeze(-1))  # saved for this one backward only: reuse its memory
        if grad.shape[-1]:
            hit = (in_slice.to(grad.dtype) * counted).unsqueeze(-1)
            grad.scatter_add_(-1, local_target.unsqueeze(-1), -hit)
        grad.mul_(grad_loss.unsqueeze(-1))
        return grad, None, None, None, None


def vocab_parallel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, shard: VocabShard,
                                 z_loss: float = 0.0) -> torch.Tensor:
    """Per-token losses (fp32, shaped like `target`) from this rank's logits [..., V/tp] of every token
    (a plain tensor, or the output layer's DTensor sharded on the vocabulary)."""
    if isinstance(logits, DTensor):
        logits = logits.to_local()
    if logits.shape[:-1] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target.shape)} disagree on the token dims")
    return _VocabParallelCrossEntropy.apply(logits, target, shard.start, shard.group, float(z_loss))


def whole_sequence(hidden: torch.Tensor) -> torch.Tensor:
    """The last hidden states over the whole sequence: sequence-parallel ones are all-gathered once here
    (left a Replicate DTensor, so the output layer's partial input gradient reduce-scatters back), rather
    than once per loss chunk."""
    if isinstance(hidden, DTensor) and any(not p.is_replicate() for p in hidden.placements):
        return hidden.redistribute(hidden.device_mesh, [Replicate()] * hidden.device_mesh.ndim)
    return hidden
