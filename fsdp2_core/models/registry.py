"""The model registry: `model_id` selects the project's own forward for a family.

Without `model_id` the plain transformers forward runs (the loss still chunks, and
context parallelism still works through the attention interface). With it, the
family's `install` reworks the model in place after it is built:
  - MoE blocks get our routing and token dispatch (`fsdp2_core.models.moe`), which
    expert parallelism plugs into, and Megatron's router auxiliary loss;
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
     serves, whether it has experts.
  3. Add the id to `ModelArguments.model_id` in the config, and a tiny config to
     tests/cp_ep that trains it against the plain forward or a single process.
"""
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch.nn as nn

from fsdp2_core.config import ConfigError
from fsdp2_core.device import detect_device_type

from .attention import install_attention
from .families import gpt_oss, qwen3, qwen3_moe
from .families.kernels import apply_kernel_hooks
from .families.qwen3_next import apply_gdn_options
from .moe import check_dispatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    model_id: str
    model_types: Tuple[str, ...]
    install: Callable[[nn.Module, object], None]
    experts: bool
    notes: str = ""


FAMILIES: Dict[str, Family] = {f.model_id: f for f in (
    Family("qwen3", ("qwen3",), qwen3.install, experts=False),
    Family("qwen3_moe", ("qwen3_moe", "mixtral"), qwen3_moe.install, experts=True,
           notes="Mixtral shares Qwen3-MoE's expert layout and router, so this id serves it too"),
    Family("gpt_oss", ("gpt_oss",), gpt_oss.install, experts=True,
           notes="attention sinks and sliding windows stay in transformers' attention (and the Ulysses core)"),
)}


def family_for(model_id: Optional[str]) -> Optional[Family]:
    if model_id is None:
        return None
    if model_id not in FAMILIES:
        raise ConfigError(f"model_id {model_id!r} is not registered; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_id]


def install_family(model: nn.Module, cfg) -> Optional[Family]:
    """Apply the configured family's forward to a freshly built model (also on the meta device)."""
    apply_gdn_options(model, cfg)
    family = family_for(cfg.model.model_id)
    p = cfg.parallel
    if family is None:
        if p.ep_size > 1 or p.ep_fsdp_size > 1:
            raise ConfigError("ep_size / ep_fsdp_size > 1 need our MoE dispatch: set model_id (qwen3_moe for Qwen3-MoE "
                              "and Mixtral, gpt_oss)")
        return None
    model_type = getattr(model.config, "model_type", None)
    if model_type not in family.model_types:
        raise ConfigError(f"model_id {family.model_id} serves model_type {' / '.join(family.model_types)}, but this "
                          f"model is {model_type}; set the matching model_id or unset it for the plain transformers "
                          "forward")
    if (p.ep_size > 1 or p.ep_fsdp_size > 1) and not family.experts:
        raise ConfigError(f"ep_size {p.ep_size}: model_id {family.model_id} has no experts; set ep_size 1")
    if family.experts and p.ep_dispatcher == "mc2":
        check_dispatcher("mc2", detect_device_type())
    family.install(model, cfg)
    install_attention(model)  # our attention core (what context parallelism splits), packed documents kept apart
    applied = apply_kernel_hooks(model, cfg)
    model._fsdp2_family = family.model_id
    log.info("model_id %s: our forward installed%s", family.model_id, f" with {', '.join(applied)}" if applied else "")
    return family
