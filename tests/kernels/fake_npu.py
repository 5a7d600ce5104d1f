"""A stand-in `torch_npu` (no NPU here): the kernel names of torch_npu computed with plain torch on CPU
tensors, each call counted, so the selection and call conventions of `fsdp2_core.kernels` can be tested."""
import collections
import importlib.machinery
import types

import torch
import torch.nn.functional as F


def make_fake_torch_npu():
    calls = collections.Counter()
    mod = types.ModuleType("torch_npu")
    mod.__spec__ = importlib.machinery.ModuleSpec("torch_npu", None)
    mod.calls = calls

    def npu_rms_norm(x, gamma, epsilon=1e-6):
        calls["npu_rms_norm"] += 1
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + epsilon)
        return x * rstd * gamma, rstd

    def npu_rotary_mul(x, r1, r2):
        calls["npu_rotary_mul"] += 1
        x1, x2 = x.chunk(2, dim=-1)
        return x * r1 + torch.cat((-x2, x1), dim=-1) * r2

    def npu_fusion_attention(q, k, v, head_num, input_layout, atten_mask=None, scale=1.0, keep_prob=1.0,
                             sparse_mode=0, **kw):
        calls["npu_fusion_attention"] += 1
        assert input_layout == "BNSD" and head_num == q.shape[1] and k.shape[1] == q.shape[1]
        if sparse_mode == 2:
            assert atten_mask.shape == (2048, 2048) and bool(atten_mask[0, 1]) and not bool(atten_mask[1, 0])
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=~atten_mask, scale=scale)
        return out, None, None, None, 0, 0, 0

    def npu_grouped_matmul(x, weight, group_list=None, split_item=0, group_type=None, **kw):
        calls["npu_grouped_matmul"] += 1
        assert split_item == 2 and group_type == 0 and len(x) == 1 and len(weight) == 1
        ends = group_list.tolist()
        out, start = [], 0
        for e, end in enumerate(ends):
            out.append(x[0][start:end] @ weight[0][e])
            start = end
        return [torch.cat(out)]

    for fn in (npu_rms_norm, npu_rotary_mul, npu_fusion_attention, npu_grouped_matmul):
        setattr(mod, fn.__name__, fn)
    return mod
