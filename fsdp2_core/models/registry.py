"""The model registry: `model_id` selects the project's own forward for a family.

Without `model_id` the plain transformers forward runs (the loss still chunks, and
context parallelism still works through the attention interface). With it, the
family's `install` reworks the model in place after it is built:
  - MoE blocks get our token dispatch (`fsdp2_core.models.moe`), which expert
    parallelism plugs into, shared experts beside the routed ones, and Megatron's router
    losses and aux-loss-free expert bias (`router_losses.py`, scored by `score_function`);
  - attention through our core (`models/attention.py`; context parallelism splits it), so
    packed samples keep documents apart at every cp size;
  - the fused-kernel hooks of `optimization` (`families/kernels.py`).

Adding a family
  1. Write `fsdp2_core/models/families/<name>.py` with `install(model, cfg)`. For MoE,
     call `install_moe(model, block_class_names, router_attribute, experts_forward,
     returns_scores)`: `experts_forward(self, tokens, counts)` computes this rank's
     experts on tokens grouped by expert (use `local()` on the weights and
     `grouped_matmul`). Check the transformers layout of the expert weights first.
  2. Add a `Family` row below: the model_id, the transformers `model_type`s it
     serves, whether it has experts, and its router's score function (softmax or
     sigmoid: what Megatron's aux losses take as probabilities).
  3. Add the id to `ModelArguments.model_id` in the config, and a tiny config to
     tests/cp_ep that trains it against the plain forward or a single process.
"""
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch.distributed as dist
import torch.nn as nn

from fsdp2_core.config import ROUTER_FIELDS, ConfigError
from fsdp2_core.device import detect_device_type

from .attention import install_attention
from .families import deepseek_v3, dsa, gpt_oss, minimax_m2, qwen2_moe, qwen3, qwen3_moe
from .families.kernels import apply_kernel_hooks
from .families.qwen3_next import apply_gdn_options
from .moe import check_dispatcher, force_random_logits
from .random_logits import random_logits_seed
from .router_losses import check_expert_bias, check_expert_groups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    model_id: str
    model_types: Tuple[str, ...]
    install: Callable[[nn.Module, object], None]
    experts: bool
    notes: str = ""
    score_function: str = "softmax"


FAMILIES: Dict[str, Family] = {f.model_id: f for f in (
    Family("qwen3", ("qwen3",), qwen3.install, experts=False),
    Family("qwen3_moe", ("qwen3_moe", "mixtral"), qwen3_moe.install, experts=True,
           notes="Mixtral shares Qwen3-MoE's expert layout and router, so this id serves it too"),
    Family("gpt_oss", ("gpt_oss",), gpt_oss.install, experts=True,
           notes="attention sinks and sliding windows stay in transformers' attention (and the Ulysses core)"),
    Family("deepseek_v3", ("deepseek_v3", "glm4_moe"), deepseek_v3.install, experts=True, score_function="sigmoid",
           notes="GLM-4.5 (glm4_moe) shares DeepSeek-V3's MoE block; Multi-Latent Attention stays transformers'"),
    Family("deepseek_v2", ("deepseek_v2",), deepseek_v3.install, experts=True,
           notes="DeepSeek-V3's MoE install with DeepSeek-V2's softmax router; Multi-Latent Attention stays "
                 "transformers'"),
    Family("minimax_m2", ("minimax_m2",), minimax_m2.install, experts=True, score_function="sigmoid",
           notes="the expert bias lives on the MoE block; q/k norms span all heads (no tensor parallelism)"),
    Family("qwen2_moe", ("qwen2_moe", "qwen3_next"), qwen2_moe.install, experts=True,
           notes="Qwen3-Next's MoE block is Qwen2-MoE's (softmax router, gated shared expert); its Gated DeltaNet "
                 "layers stay transformers'"),
    Family("deepseek_v32", ("deepseek_v32", "glm_moe_dsa"), dsa.install, experts=True, score_function="sigmoid",
           notes="DeepSeek-V3.2 and GLM-5: DeepSeek-V3's MoE block; sparse attention with a trained indexer "
                 "(models/families/dsa.py)"),
)}


def family_for(model_id: Optional[str]) -> Optional[Family]:
    if model_id is None:
        return None
    if model_id not in FAMILIES:
        raise ConfigError(f"model_id {model_id!r} is not registered; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_id]


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def install_family(model: nn.Module, cfg) -> Optional[Family]:
    """Apply the configured family's forward to a freshly built model (also on the meta device)."""
    apply_gdn_options(model, cfg)
    family = family_for(cfg.model.model_id)
    p = cfg.parallel
    if family is None:
        if cfg.model.dsa_indexer_loss_coeff:
            raise ConfigError("model.dsa_indexer_loss_coeff trains the sparse-attention indexer in the engine's "
                              "forward: set model_id deepseek_v32 (DeepSeek-V3.2, GLM-5)")
        if p.ep_size > 1 or p.ep_fsdp_size > 1:
            raise ConfigError("ep_size / ep_fsdp_size > 1 need our MoE dispatch: set model_id (qwen3_moe for Qwen3-MoE "
                              "and Mixtral, deepseek_v3 for DeepSeek-V3 and GLM-4.5, deepseek_v2, qwen2_moe, gpt_oss)")
        if getattr(model, "_fsdp2_mtp_layers", None):
            install_attention(model)  # the MTP layers call the attention core with the main model's masks
        return None
    model_type = getattr(model.config, "model_type", None)
    if model_type not in family.model_types:
        raise ConfigError(f"model_id {family.model_id} serves model_type {' / '.join(family.model_types)}, but this "
                          f"model is {model_type}; set the matching model_id or unset it for the plain transformers "
                          "forward")
    if (p.ep_size > 1 or p.ep_fsdp_size > 1) and not family.experts:
        raise ConfigError(f"ep_size {p.ep_size}: model_id {family.model_id} has no experts; set ep_size 1")
    m = cfg.model
    router_fields = [n for n in ROUTER_FIELDS if getattr(m, n)]
    if router_fields and not family.experts:
        raise ConfigError(f"model.{', model.'.join(router_fields)}: model_id {family.model_id} has no experts (no "
                          "router); unset them")
    if family.experts and p.ep_dispatcher == "mc2":
        check_dispatcher("mc2", detect_device_type())
    if m.dsa_indexer_loss_coeff and family.model_id != "deepseek_v32":
        raise ConfigError(f"model.dsa_indexer_loss_coeff {m.dsa_indexer_loss_coeff}: model_id {family.model_id} has "
                          "no sparse-attention indexer; unset it")
    family.install(model, cfg)
    check_expert_bias(getattr(model, "_fsdp2_moe_blocks", []), cfg.model.moe_router_bias_update_rate)
    if m.moe_expert_capacity_factor is not None:
        for block in model._fsdp2_moe_blocks:
            block._fsdp2_capacity = (m.moe_expert_capacity_factor, m.moe_token_drop_policy)
    if m.moe_router_force_load_balancing:
        force_random_logits(model._fsdp2_moe_blocks, random_logits_seed(cfg.training.seed, _rank(), p.tp_size))
    install_attention(model)  # our attention core (what context parallelism splits), packed documents kept apart
    applied = apply_kernel_hooks(model, cfg)
    model._fsdp2_family = family.model_id
    model._fsdp2_score_function = family.score_function
    # Router settings the Hugging Face config has no field for (the loss reads them; models/router_losses.py).
    model._fsdp2_router_coeffs = {"seq_aux": m.moe_seq_aux_loss_coeff, "z": m.moe_z_loss_coeff,
                                  "device": m.moe_device_level_aux_loss_coeff, "comm": m.moe_comm_aux_loss_coeff,
                                  "per_sample": m.moe_balance_per_sample}
    if m.moe_device_level_aux_loss_coeff or m.moe_comm_aux_loss_coeff:
        check_expert_groups(model.config, m.moe_device_level_aux_loss_coeff, m.moe_comm_aux_loss_coeff)
    model._fsdp2_count_expert_load = bool(m.moe_router_bias_update_rate)
    log.info("model_id %s: our forward installed%s", family.model_id, f" with {', '.join(applied)}" if applied else "")
    return family
