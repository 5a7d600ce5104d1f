"""Grouped GEMM for MoE experts (`moe_grouped_gemm`): rows of x grouped by expert times that expert's weight."""
import torch

from . import select


def grouped_gemm_reference(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """One padded batched matmul over [experts, capacity, in] (exact: padding rows are dropped)."""
    experts = w.shape[0]
    expert_of = torch.repeat_interleave(torch.arange(experts, device=x.device), counts)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(x.shape[0], device=x.device) - start[expert_of]
    buf = x.new_zeros(experts, int(counts.max()), x.shape[1]).index_put((expert_of, slot), x)
    return torch.bmm(buf, w)[expert_of, slot]


def grouped_gemm(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """x [tokens, in] grouped by expert (`counts` rows each), w [experts, in, out] -> [tokens, out]."""
    impl = select.choose("grouped_gemm", select.device_of(x), x.dtype)
    select.record("grouped_gemm", impl)
    if impl == "torch_grouped_mm":
        return torch._grouped_mm(x, w, offs=torch.cumsum(counts, 0).to(torch.int32))
    if impl == "npu_grouped_matmul":
        return _NpuGroupedMatmul.apply(x, w, counts)
    return grouped_gemm_reference(x, w, counts)


def _npu_gmm(x, w, counts):
    group_list = torch.cumsum(counts, 0).to(torch.int64)  # group_list_type 0: cumulative row ends
    return select.torch_npu().npu_grouped_matmul([x], [w], group_list=group_list, split_item=2, group_type=0)[0]


class _NpuGroupedMatmul(torch.autograd.Function):
    """torch_npu's grouped matmul with its backward spelled out (not every torch_npu release differentiates it):
    grad_x is another grouped matmul with the transposed weights; grad_w[e] = x_eᵀ · grad_e, computed
    with the padded batched matmul of the reference (exact)."""

    @staticmethod
    def forward(ctx, x, w, counts):
        ctx.save_for_backward(x, w, counts)
        return _npu_gmm(x, w, counts)

    @staticmethod
    def backward(ctx, grad):
        x, w, counts = ctx.saved_tensors
        wants_x = ctx.needs_input_grad[0]
        grad_x = _npu_gmm(grad.contiguous(), w.transpose(1, 2).contiguous(), counts) if wants_x else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            experts = w.shape[0]
            expert_of = torch.repeat_interleave(torch.arange(experts, device=x.device), counts)
            start = torch.cumsum(counts, 0) - counts
            slot = torch.arange(x.shape[0], device=x.device) - start[expert_of]
            cap = int(counts.max()) if x.shape[0] else 0
            xb = x.new_zeros(experts, cap, x.shape[1]).index_put((expert_of, slot), x)
            gb = grad.new_zeros(experts, cap, grad.shape[1]).index_put((expert_of, slot), grad)
            grad_w = torch.bmm(xb.transpose(1, 2), gb).to(w.dtype)
        return grad_x, grad_w, None


def grouped_experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                            top_k_weights: torch.Tensor) -> torch.Tensor:
    """Replaces a transformers experts module's forward (fused 3-D weights) with two grouped GEMMs.

    Layouts: Qwen3-MoE / Mixtral gate_up_proj [E, 2·I, H], down_proj [E, H, I], x @ W[e]ᵀ, SiLU gate;
    gpt-oss gate_up_proj [E, H, 2·I] + bias, down_proj [E, I, H] + bias, x @ W[e] + b[e], its own gate.
    """
    tokens, k = top_k_index.shape
    flat = top_k_index.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=self.num_experts)
    x = hidden_states[order // k]
    biased = hasattr(self, "gate_up_proj_bias")
    gate_up_w = self.gate_up_proj if biased else self.gate_up_proj.transpose(1, 2)
    down_w = self.down_proj if biased else self.down_proj.transpose(1, 2)
    h = grouped_gemm(x, gate_up_w, counts)
    if biased:
        h = self._apply_gate(h + torch.repeat_interleave(self.gate_up_proj_bias, counts, dim=0))
    else:
        gate, up = h.chunk(2, dim=-1)
        h = self.act_fn(gate) * up
    y = grouped_gemm(h, down_w, counts)
    if biased:
        y = y + torch.repeat_interleave(self.down_proj_bias, counts, dim=0)
    w = top_k_weights.reshape(-1)[order].unsqueeze(-1).to(y.dtype)
    return hidden_states.new_zeros(tokens, y.shape[-1]).index_add(0, order // k, y * w)
