"""DeepSeek Sparse Attention (DSA): the lightning indexer's scores, its top-k selection and its KL loss.

The indexer (one per attention layer) scores every key position t for every query s:

    I[s, t] = Σ_h w[s, h] · relu(q[s, h] · k[t]) · d^-1/2 · H^-1/2

with q = wq_b(q latent), k = LayerNorm(wk(x)), w = weights_proj(x), the first `qk_rope_head_dim` dimensions of q
and k rotated (`rope`), H indexer heads of width d. Each query attends only to the `index_topk` best-scored keys it
may see (causal, its own document). MindSpeed-LLM and megatron-core also rotate q and k by a scaled Hadamard
matrix first: that is orthogonal for a power-of-two d, so q · k is unchanged, and transformers leaves it out.

The indexer learns only from its own loss (its inputs are detached, and top-k passes no gradient): per query, the
KL divergence from the main attention's distribution over the selected keys (softmax per head over them, summed
over the heads, L1-normalised; detached) to the softmax of the indexer's scores over the same keys, averaged over
the queries of the micro-batch: MindSpeed-LLM's `compute_dsa_indexer_loss`, which megatron-core 0.16 computes
too with `dsa_indexer_use_sparse_loss` (checked in tests/arch/test_dsa.py).
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

INDEXER_LOSS = "dsa_indexer_loss"  # MindSpeed-LLM's name in the iteration line
EPS = 1e-10  # MindSpeed's (and megatron-core's) guard inside the logarithms


def index_scores(indexer, hidden: torch.Tensor, q_latent: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 rope: Callable) -> torch.Tensor:
    """[b, S, S] indexer scores (fp32) from the hidden states [b, S, hidden] and the q latent [b, S, q_lora_rank].

    `indexer` is transformers' DeepseekV32Indexer / GlmMoeDsaIndexer (its weights); `rope(q, k, cos, sin,
    unsqueeze_dim=2)` its family's rotation (half-split for DeepSeek-V3.2, interleaved for GLM-MoE-DSA)."""
    b, s, _ = hidden.shape
    heads, dim, rot = indexer.n_heads, indexer.head_dim, indexer.qk_rope_head_dim
    q = indexer.wq_b(q_latent).view(b, s, heads, dim)
    k = indexer.k_norm(indexer.wk(hidden)).unsqueeze(2)                       # [b, S, 1, d]
    q_rot, q_pass = q.split([rot, dim - rot], dim=-1)
    k_rot, k_pass = k.split([rot, dim - rot], dim=-1)
    q_rot, k_rot = rope(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
    q = torch.cat([q_rot, q_pass], dim=-1).float()
    k = torch.cat([k_rot, k_pass], dim=-1).squeeze(2).float()                # [b, S, d]
    scores = F.relu(torch.matmul(q, k.transpose(-1, -2).unsqueeze(1)) * indexer.softmax_scale)  # [b, S, H, S]
    weights = indexer.weights_proj(hidden.to(indexer.weights_proj.weight.dtype)).float() * heads ** -0.5
    return torch.matmul(weights.unsqueeze(-2), scores).squeeze(-2)


def select_top_k(scores: torch.Tensor, allowed: torch.Tensor, top_k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masked scores [b, S, S] (-inf where a query may not look) and the top-k key positions [b, S, k]."""
    masked = scores.masked_fill(~allowed, float("-inf"))
    return masked, masked.topk(min(top_k, scores.shape[-1]), dim=-1).indices


def selected_mask(indices: torch.Tensor, seq: int) -> torch.Tensor:
    """[b, S, S] True at the selected key positions."""
    out = torch.zeros(*indices.shape[:-1], seq, dtype=torch.bool, device=indices.device)
    return out.scatter(-1, indices, True)


def attention_target(query: torch.Tensor, key: torch.Tensor, scaling: float, mask: torch.Tensor) -> torch.Tensor:
    """The main attention's probabilities [b, S, S] summed over its heads: query [b, h, S, d], key [b, h, S, d],
    mask [b|1, 1|h, S, S] (True = attended)."""
    logits = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scaling
    probs = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    return probs.sum(dim=1)


def sparse_indexer_kl(target: torch.Tensor, masked_scores: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(indexer scores)) over the selected keys, averaged over the queries (MindSpeed's form).

    target [b, S, S] (the main attention summed over heads, no gradient), masked_scores [b, S, S], indices [b, S, k]."""
    p = torch.gather(target.detach(), -1, indices)
    p = p / p.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    log_q = torch.log(torch.softmax(torch.gather(masked_scores, -1, indices), dim=-1) + EPS)
    return ((p + EPS) * (torch.log(p + EPS) - log_q)).sum(dim=-1).mean()


def indexer_losses(modules) -> Optional[Tuple[torch.Tensor, float]]:
    """(Σ over the attention layers of their indexer loss, its mean over the layers for the log) of the last
    training forward, or None; each layer's loss already carries the coefficient, as Megatron and MindSpeed add it."""
    losses = [m._fsdp2_indexer_loss for m in modules if getattr(m, "_fsdp2_indexer_loss", None) is not None]
    for m in modules:
        m._fsdp2_indexer_loss = None
    if not losses:
        return None
    total = torch.stack(losses).sum()
    return total, float(total.detach()) / len(losses)
