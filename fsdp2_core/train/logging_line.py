"""Megatron's log lines, field for field, so existing parsers and dashboards keep working."""
import math
from typing import Dict, Optional


def iteration_line(iteration: int, train_iters: int, consumed: int, ms_per_iter: float, lr: float,
                   global_batch: int, loss: Optional[float], loss_scale: float, grad_norm: Optional[float],
                   skipped: int, nan: int, tokens_per_s: float, tflops: float, mfu: Optional[float],
                   peak_mem_gb: float, extra_losses: Optional[Dict[str, float]] = None) -> str:
    """`extra_losses`: the MoE router losses and MTP losses, printed after the lm loss as Megatron prints the
    other entries of its total_loss_dict (z_loss, load_balancing_loss, seq_load_balancing_loss, mtp_1 loss)."""
    s = " iteration {:8d}/{:8d} |".format(iteration, train_iters)
    s += " consumed samples: {:12d} |".format(consumed)
    s += " elapsed time per iteration (ms): {:.1f} |".format(ms_per_iter)
    s += " learning rate: {:.6E} |".format(lr)
    s += " global batch size: {:5d} |".format(global_batch)
    if loss is not None and loss > 0.0:  # Megatron leaves out a zero average (all iterations skipped)
        s += " lm loss: {:.6E} |".format(loss)
    for name, value in (extra_losses or {}).items():
        if value > 0.0:
            s += " {}: {:.6E} |".format(name, value)
    s += " loss scale: {:.1f} |".format(loss_scale)
    if grad_norm is not None:
        s += " grad norm: {:.3f} |".format(grad_norm)
    s += " number of skipped iterations: {:3d} |".format(skipped)
    s += " number of nan iterations: {:3d} |".format(nan)
    s += " tokens/s/device: {:.1f} |".format(tokens_per_s)
    s += " TFLOP/s/device: {:.2f} |".format(tflops)
    s += " MFU: {} |".format("n/a" if mfu is None else "{:.2f}%".format(100.0 * mfu))
    s += " peak memory (GB): {:.2f} |".format(peak_mem_gb)
    return s


def eval_line(prefix: str, loss: float, group: Optional[str] = None) -> str:
    """'validation loss at iteration N | lm loss value: ... | lm loss PPL: ... |' framed by dashes; a named
    validation group (bigscience's / bigcode's --valid-weighted-split-paths) is written as their training.py
    writes it: 'NAME loss at iteration N | ...'."""
    head = " validation loss at {} | ".format(prefix) if group is None else "{} loss at {} | ".format(group, prefix)
    body = head + "lm loss value: {:.6E} | lm loss PPL: {:.6E} | ".format(loss, math.exp(min(20.0, loss)))
    rule = "-" * (len(body) + 1)
    return "\n".join((rule, body, rule))
