"""Throughput figures (tokens/s, TFLOP/s, MFU per device) and the metrics sinks.

FLOPs per token follow the usual dense-transformer estimate: 6 × (parameters without
the input embedding) for the matmuls of forward and backward, plus 12 × layers ×
hidden × sequence for attention scores and values. Recompute is not counted (model
FLOPs, not hardware FLOPs). Sinks: a JSON-lines file in the output directory, and
TensorBoard / wandb when configured (both optional dependencies).
"""
import json
import logging
import os
from typing import Dict, Optional

log = logging.getLogger(__name__)


def flops_per_token(hf_config, non_embedding_params: int, seq_length: int) -> float:
    layers = getattr(hf_config, "num_hidden_layers", None) or getattr(hf_config, "n_layer", 0)
    hidden = getattr(hf_config, "hidden_size", None) or getattr(hf_config, "n_embd", 0)
    return 6.0 * non_embedding_params + 12.0 * layers * hidden * seq_length


def throughput(tokens: int, seconds: float, world_size: int, flops_token: float,
               peak_tflops: Optional[float]) -> Dict[str, Optional[float]]:
    tok_s = tokens / max(seconds, 1e-12) / world_size
    tflops = tok_s * flops_token / 1e12
    return {"tokens_per_s_per_device": tok_s, "tflops_per_device": tflops,
            "mfu": (tflops / peak_tflops) if peak_tflops else None}


def wandb_init_args(t) -> Dict[str, object]:
    """wandb.init's run settings from the training config (a run id resumes that run)."""
    args = {"project": t.wandb_project, "name": t.wandb_exp_name, "dir": t.wandb_save_dir}
    if t.wandb_entity:  # unset: wandb takes WANDB_ENTITY, or the API key's default entity
        args["entity"] = t.wandb_entity
    if t.wandb_id:
        args.update(id=t.wandb_id, resume="allow")
    if t.wandb_group:
        args["group"] = t.wandb_group
    return args


class MetricsSink:
    """Writes scalars on rank 0 to metrics.jsonl, TensorBoard and wandb."""

    def __init__(self, t, rank: int, config_dict: Optional[dict] = None):
        self.active = rank == 0
        self.jsonl = self.tb = self.wandb = None
        if not self.active:
            return
        if t.output_dir:
            os.makedirs(t.output_dir, exist_ok=True)
            self.jsonl = open(os.path.join(t.output_dir, "metrics.jsonl"), "a", encoding="utf-8")
        if t.tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(log_dir=t.tensorboard_dir)
            except ImportError:
                log.warning("tensorboard_dir is set but the tensorboard package is missing: pip install tensorboard")
        if t.wandb_project:
            try:
                import wandb
                self.wandb = wandb.init(**wandb_init_args(t), config=config_dict)
            except ImportError:
                log.warning("wandb_project is set but the wandb package is missing: pip install wandb")

    def write(self, kind: str, step: int, values: Dict[str, object]) -> None:
        if not self.active:
            return
        if self.jsonl:
            self.jsonl.write(json.dumps({"kind": kind, "iteration": step, **values}) + "\n")
            self.jsonl.flush()
        scalars = {f"{kind}/{k}": v for k, v in values.items() if isinstance(v, (int, float)) and v is not None}
        if self.tb:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if self.jsonl:
            self.jsonl.close()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()
