"""DeepSeek Sparse Attention (MindSpeed-LLM --enable-dsa-indexer) -> transformers' GLM-MoE-DSA family.

MindSpeed-LLM's DSA indexer (mindspeed_llm/tasks/models/transformer/dsa_indexer.py), per attention layer:
  --index-n-heads H (default 64)     index_n_heads: the indexer's query heads, wq_b from the q latent
  --index-head-dim D (default 128)   index_head_dim: their width, and the width of its one key (wk, LayerNorm)
  --index-topk K (default 2048)      index_topk: each query attends to its K best-scored keys
  --indexer-loss-coeff C (default 1) model.dsa_indexer_loss_coeff: the indexer's KL loss (fsdp2_core/models/
                                     indexer_loss.py), the only thing that trains the indexer
It rotates the first qk_pos_emb_head_dim dimensions of the indexer's q and k as interleaved pairs (it de-interleaves
them before the half-split rotation, as its MLA does), which is transformers' GLM-MoE-DSA indexer; transformers'
DeepSeek-V3.2 rotates half-split pairs (DeepSeek's released inference code), a different parametrisation (the same
model only after permuting the indexer's wq_b / wk rows). So MindSpeed's DeepSeek-V3.2 and GLM-5 scripts both
become `glm_moe_dsa`, whose attention, MoE and MTP layers are otherwise DeepSeek-V3's.
MindSpeed's Hadamard rotation of q and k (`rotate_activation`) is orthogonal when D is a power of two, so scores
are unchanged and transformers leaves it out; for any other D MindSpeed pads and truncates, which changes the
scores, so D must be a power of two. The fused kernels (--use-fused-lightning-indexer, --use-sparse-flash-attn,
--use-fused-lightning-indexer-loss) compute the same scores, attention and loss (mapping.py absorbs them).
"""
from typing import Any, Dict, List, Optional

from . import ArchitectureError

DSA_FAMILY = "glm_moe_dsa"
DSA_FAMILIES = ("deepseek_v32", "glm_moe_dsa")
ENGINE_MODEL_ID = {family: "deepseek_v32" for family in DSA_FAMILIES}
DSA_FLAGS = ("--index-n-heads", "--index-head-dim", "--index-topk", "--indexer-loss-coeff")
DEFAULTS = {"--index-n-heads": 64, "--index-head-dim": 128, "--index-topk": 2048, "--indexer-loss-coeff": 1.0}


def wants_dsa(g) -> bool:
    given = [flag for flag in DSA_FLAGS if g.get(flag) is not None]
    if given and not g.get("--enable-dsa-indexer"):
        raise ArchitectureError(f"{', '.join(given)} without --enable-dsa-indexer: MindSpeed builds no indexer then "
                                "and ignores them; add --enable-dsa-indexer for sparse attention, or drop them")
    return bool(g.get("--enable-dsa-indexer"))


def _value(g, flag):
    return g[flag] if g.get(flag) is not None else DEFAULTS[flag]


def dsa_fields(g, mla: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The family's indexer fields; refuses what MindSpeed's indexer does not compute the same way."""
    if mla is None:
        raise ArchitectureError("--enable-dsa-indexer without --multi-latent-attention: the indexer reads MLA's q "
                                "latent; add --multi-latent-attention (with --q-lora-rank)")
    if mla.get("q_lora_rank") is None:
        raise ArchitectureError("--enable-dsa-indexer without --q-lora-rank: the indexer's queries come from MLA's q "
                                "latent, which only a q LoRA rank gives; add --q-lora-rank")
    heads, dim, top_k = (_value(g, f) for f in ("--index-n-heads", "--index-head-dim", "--index-topk"))
    for flag, value in (("--index-n-heads", heads), ("--index-head-dim", dim), ("--index-topk", top_k)):
        if not isinstance(value, int) or value < 1:
            raise ArchitectureError(f"{flag} {value}: give a positive integer")
    if dim & (dim - 1):
        raise ArchitectureError(f"--index-head-dim {dim}: MindSpeed's Hadamard rotation of the indexer's q and k keeps "
                                "their products only for a power-of-two width (it pads and truncates otherwise); "
                                "give a power of two such as 128")
    if dim < mla["qk_rope_head_dim"]:
        raise ArchitectureError(f"--index-head-dim {dim} is narrower than its rotary part --qk-pos-emb-head-dim "
                                f"{mla['qk_rope_head_dim']}; give at least that")
    return {"index_n_heads": heads, "index_head_dim": dim, "index_topk": top_k}


def dsa_engine_fields(g) -> Dict[str, Any]:
    if not g.get("--enable-dsa-indexer"):
        return {}
    coeff = float(_value(g, "--indexer-loss-coeff"))
    if coeff < 0:
        raise ArchitectureError(f"--indexer-loss-coeff {coeff}: give 0 or more")
    return {"dsa_indexer_loss_coeff": coeff}


def dsa_flags(arch: Dict[str, Any], values: Dict[str, Any]) -> List[str]:
    """Back to MindSpeed's flags (reverse conversion)."""
    if arch.get("model_type") not in DSA_FAMILIES:
        return []
    if arch["model_type"] != DSA_FAMILY:
        raise ArchitectureError(f"model_type {arch['model_type']}: transformers' DeepSeek-V3.2 rotates its indexer's "
                                "rotary dimensions as half-split pairs, which no MindSpeed-LLM flag describes (its "
                                "indexer rotates interleaved pairs, GLM-MoE-DSA's)")
    return ["--enable-dsa-indexer", "--index-n-heads", str(arch["index_n_heads"]), "--index-head-dim",
            str(arch["index_head_dim"]), "--index-topk", str(arch["index_topk"]),
            "--indexer-loss-coeff", str(values.get("dsa_indexer_loss_coeff", 0.0))]
