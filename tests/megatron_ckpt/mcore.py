"""Real Megatron checkpoints for the tests, written by megatron-core 0.16.1 itself on CPU gloo ranks.

megatron-core's GPTModel with the local layer spec runs on CPU once a few CUDA calls are
neutralised (`patch_for_cpu`). A checkpoint is written the way megatron.training does it
(megatron/training/checkpointing.py of core_v0.16.1, which is not in the megatron-core
package): `generate_state_dict` gives {args, checkpoint_version 3.0, iteration, model or
model0.., opt_param_scheduler, rng_state, num_floating_point_operations_so_far}; the
legacy format `torch.save`s it per rank to `get_checkpoint_name(...)` (mp_rank_TT[_PPP][_EEE]
/model_optim_rng.pt, written by expert-data-parallel rank 0), torch_dist hands the same
dict with sharded model state to `megatron.core.dist_checkpointing.save`; rank 0 then
writes latest_checkpointed_iteration.txt (`save_checkpoint`).
"""
import contextlib
import os
import random
import re
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

VOCAB, PADDED, SEQ = 120, 128, 16   # tokenizer size; Megatron's padding to a multiple of 64 x tp 2; sequence
ITERATION, GBS = 6, 4
# Known functions of each weight, so a test tells where each restored state came from (the fp32 master copy is
# offset so that weights read from it differ from the model weights).
MOMENTS = {"exp_avg": lambda p: 0.1 * p, "exp_avg_sq": lambda p: 0.01 * p * p + 1e-6, "fp32_param": lambda p: p + 1e-3}


@dataclass
class Shape:
    """A tiny model shape and its parallel layout."""
    name: str
    family: str                      # the Hugging Face family it must convert to
    layers: int = 2
    hidden: int = 32
    heads: int = 4
    groups: int = 2
    ffn: int = 64
    rope: bool = True
    swiglu: bool = True
    rms: bool = True
    bias: bool = False
    qk_norm: bool = False
    tied: bool = False
    experts: int = 0
    moe_ffn: int = 16
    topk: int = 2
    tp: int = 2
    pp: int = 2
    ep: int = 1
    vpp: Optional[int] = None
    gelu_fusion: bool = False
    extra: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)   # further TransformerConfig fields (MLA, routers, shared experts)
    flags: tuple = ()                            # the Megatron flags that set them, for the saved args
    mla: bool = False                            # Multi-Latent Attention (MLATransformerConfig, MLA layer spec)
    mtp: int = 0                                 # multi-token prediction depths (mtp.layers.K on the last stage)
    model: dict = field(default_factory=dict)    # further GPTModel arguments (Llama-3.1's RoPE scaling)
    gdn: bool = False                            # Gated DeltaNet layers (Qwen3-Next): megatron-core's experimental
    #                                              block spec, whose modules are Transformer Engine's (CpuTESpec)


SHAPES = {
    "llama": Shape("llama", "llama", layers=4, vpp=2),
    "gpt2": Shape("gpt2", "gpt2", groups=4, rope=False, swiglu=False, rms=False, bias=True, tied=True, ffn=128,
                  gelu_fusion=True),
    "qwen3": Shape("qwen3", "qwen3", qk_norm=True, tied=True),
    "moe": Shape("moe", "qwen3_moe", qk_norm=True, experts=4),
    "mixtral_ep": Shape("mixtral_ep", "mixtral", experts=4, tp=1, pp=2, ep=2),
    # Qwen2-MoE: a gated shared expert beside softmax-over-all-experts routing, q/k/v biases only
    "qwen2_moe": Shape("qwen2_moe", "qwen2_moe", experts=4, pp=1,
                       config=dict(add_qkv_bias=True, moe_router_pre_softmax=True,
                                   moe_shared_expert_intermediate_size=32, moe_shared_expert_gate=True),
                       flags=("--add-qkv-bias", "--moe-router-pre-softmax", "--moe-shared-expert-intermediate-size",
                              "32", "--moe-shared-expert-gate")),
    # GLM-4.5: sigmoid router with expert bias, 2 groups, scaled weights, an ungated shared expert, a dense first
    # layer, q/k/v biases
    "glm45": Shape("glm45", "glm4_moe", experts=4, pp=1, config=dict(
        add_qkv_bias=True, moe_router_score_function="sigmoid", moe_router_enable_expert_bias=True,
        moe_router_num_groups=2, moe_router_group_topk=1, moe_router_topk_scaling_factor=2.5,
        moe_shared_expert_intermediate_size=16, moe_layer_freq=[0, 1]),
        flags=("--add-qkv-bias", "--moe-router-score-function", "sigmoid", "--moe-router-enable-expert-bias",
               "--moe-router-num-groups", "2", "--moe-router-group-topk", "1", "--moe-router-topk-scaling-factor",
               "2.5", "--moe-shared-expert-intermediate-size", "16", "--moe-layer-freq", "[0,1]")),
    # DeepSeek-V3: Multi-Latent Attention with a q LoRA, the GLM-4.5 router and shared expert
    "dsv3": Shape("dsv3", "deepseek_v3", experts=4, pp=1, qk_norm=True, groups=4, mla=True, config=dict(
        q_lora_rank=16, kv_lora_rank=16, qk_head_dim=8, qk_pos_emb_head_dim=8, v_head_dim=8, rope_type="rope",
        moe_router_score_function="sigmoid", moe_router_enable_expert_bias=True, moe_router_num_groups=2,
        moe_router_group_topk=1, moe_router_topk_scaling_factor=2.5, moe_shared_expert_intermediate_size=16,
        moe_layer_freq=[0, 1], layernorm_epsilon=1e-6),   # transformers' latent norms always use 1e-6
        flags=("--norm-epsilon", "1e-6", "--multi-latent-attention", "--q-lora-rank", "16", "--kv-lora-rank", "16",
               "--qk-head-dim", "8",
               "--qk-pos-emb-head-dim", "8", "--v-head-dim", "8", "--rope-type", "rope",
               "--moe-router-score-function", "sigmoid", "--moe-router-enable-expert-bias",
               "--moe-router-num-groups", "2", "--moe-router-group-topk", "1", "--moe-router-topk-scaling-factor",
               "2.5", "--moe-shared-expert-intermediate-size", "16", "--moe-layer-freq", "[0,1]")),
    # Multi-token prediction: two depths of Qwen3-MoE layers (experts inside), eh_proj column-parallel over tp 2
    "mtp": Shape("mtp", "qwen3_moe", qk_norm=True, experts=4, pp=1, mtp=2),
    # DeepSeek-V2: Multi-Latent Attention without a q LoRA (linear_q_proj), softmax over all experts before the top k,
    # a shared expert, a dense first layer
    "dsv2": Shape("dsv2", "deepseek_v2", experts=4, pp=1, qk_norm=True, groups=4, mla=True, config=dict(
        q_lora_rank=None, kv_lora_rank=16, qk_head_dim=8, qk_pos_emb_head_dim=8, v_head_dim=8, rope_type="rope",
        moe_router_pre_softmax=True, moe_shared_expert_intermediate_size=16, moe_layer_freq=[0, 1],
        layernorm_epsilon=1e-6),
        flags=("--norm-epsilon", "1e-6", "--multi-latent-attention", "--kv-lora-rank", "16", "--qk-head-dim", "8",
               "--qk-pos-emb-head-dim", "8", "--v-head-dim", "8", "--rope-type", "rope", "--moe-router-pre-softmax",
               "--moe-shared-expert-intermediate-size", "16", "--moe-layer-freq", "[0,1]")),
    # gpt-oss: biases everywhere (experts and router too), learnable softmax offsets (sinks), quick-GeGLU experts with
    # the offset and clamp, a sliding window on every other layer (megatron-core allows MoE biases only with expert
    # tensor parallelism 1, so one stage per layer instead of tp 2)
    "gpt_oss": Shape("gpt_oss", "gpt_oss", experts=4, tp=1, swiglu=False, bias=True, config=dict(
        gated_linear_unit=True, activation_func=lambda x: x * torch.sigmoid(1.702 * x), glu_linear_offset=1.0,
        activation_func_clamp_value=7.0, softmax_type="learnable", window_size=(3, 0), window_attn_skip_freq=2,
        expert_tensor_parallel_size=1),
        flags=("--quick-geglu", "--glu-linear-offset", "1.0", "--activation-func-clamp-value", "7.0",
               "--softmax-type", "learnable", "--window-size", "3,0", "--window-attn-skip-freq", "2")),
    # Llama-3.1: megatron-core's RoPE scaling (factor 8, low/high frequency factors 1 and 4, 8192 original positions);
    # with head_dim 8 one frequency (wavelength ~6283) falls between the two cut-offs and is smoothed
    # StableLM: a Llama-style script that keeps Megatron's default LayerNorm (with biases), half the head rotated,
    # q/k/v biases only
    "stablelm": Shape("stablelm", "stablelm", rms=False, config=dict(add_qkv_bias=True), model=dict(rotary_percent=0.5),
                      flags=("--add-qkv-bias", "--rotary-percent", "0.5")),
    # OPT: learned positions, LayerNorm and GeLU without linear biases (one key/value head per head)
    "opt": Shape("opt", "opt", groups=4, rope=False, swiglu=False, rms=False, bias=False, ffn=128),
    "llama31": Shape("llama31", "llama", pp=1, model=dict(rope_scaling=True, rope_scaling_factor=8.0),
                     flags=("--use-rope-scaling", "--rope-scaling-factor", "8.0")),
    # Mistral: a sliding window of 4 tokens (the current one and 3 before) on every layer
    "mistral": Shape("mistral", "mistral", pp=1, config=dict(window_size=(3, 0)), flags=("--window-size", "3,0")),
    # Qwen3-Next: three Gated DeltaNet layers then a gated full-attention layer (linear_attention_freq 4), zero-centred
    # norms (x·(1 + w)), softmax routing with a gated shared expert; tp 2 splits the GDN heads, pp 2 the layers
    "qwen3_next": Shape("qwen3_next", "qwen3_next", layers=4, qk_norm=True, experts=4, gdn=True, config=dict(
        experimental_attention_variant="gated_delta_net", linear_attention_freq=4, attention_output_gate=True,
        layernorm_zero_centered_gamma=True, linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8,
        linear_num_key_heads=2, linear_num_value_heads=4, moe_shared_expert_intermediate_size=16,
        moe_shared_expert_gate=True),
        flags=("--experimental-attention-variant", "gated_delta_net", "--linear-attention-freq", "4",
               "--attention-output-gate", "--apply-layernorm-1p", "--linear-conv-kernel-dim", "4",
               "--linear-key-head-dim", "8", "--linear-value-head-dim", "8", "--linear-num-key-heads", "2",
               "--linear-num-value-heads", "4", "--moe-shared-expert-intermediate-size", "16",
               "--moe-shared-expert-gate", "--transformer-impl", "transformer_engine"),
        extra=dict(linear_attention_freq=4)),   # Megatron-LM parses the frequency to an int
}


def patch_for_cpu() -> None:
    """What megatron-core's GPTModel needs to build and run on CPU without Transformer Engine."""
    warnings.filterwarnings("ignore")
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda *a, **k: None
    torch.Tensor.cuda = lambda self, *a, **k: self  # the tied-embedding all-reduce moves weights to the GPU first
    from megatron.core.tensor_parallel import random as tp_random
    tp_random.CudaRNGStatesTracker.fork = lambda self, name=None: contextlib.nullcontext()
    from megatron.core.transformer.moe import moe_utils
    moe_utils.te_general_gemm = None
    from megatron.core.transformer import multi_latent_attention
    multi_latent_attention.HAVE_TE = False  # its import of the TE extension succeeds without TE, with None classes
    from megatron.core.fusions import fused_softmax
    fused_softmax.get_sliding_window_causal_mask = _sliding_window_mask
    _patch_gated_delta_net()


def _patch_gated_delta_net() -> None:
    """megatron-core's GatedDeltaNet without flash-linear-attention, causal-conv1d nor Transformer Engine: its own
    torch chunked delta rule (the one its deterministic mode runs, same [b, s, heads, d] layout and 1/sqrt(d) scale,
    q/k L2-normalised before it as megatron-core does), FLA's l2norm in torch, the conv1d fallback it takes when
    causal_conv1d is absent, the gated norm uncompiled; its block spec built from CpuTESpec."""
    from megatron.core.models.gpt import experimental_attention_variant_module_specs as eav
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.ssm import gated_delta_net as gdn
    gdn.HAVE_FLA = True
    gdn.chunk_gated_delta_rule = gdn.torch_chunk_gated_delta_rule
    gdn.l2norm = lambda x, dim=-1, eps=1e-6: x * torch.rsqrt((x * x).sum(dim=dim, keepdim=True) + eps)
    gdn.causal_conv1d_fn = None
    norm = gdn.GatedDeltaNet._apply_gated_norm
    gdn.GatedDeltaNet._apply_gated_norm = getattr(norm, "_torchdynamo_orig_callable", norm)
    eav._get_backend_spec_provider = lambda config: CpuTESpec()
    gpt_layer_specs.TESpecProvider = CpuTESpec   # the full-attention layers' spec (get_..._transformer_engine_spec)


def _rms_norm(x, weight, centred: bool, eps: float):
    y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return (y * (weight.float() + 1 if centred else weight.float())).type_as(x)


class CenteredRMSNorm(torch.nn.Module):
    """Transformer Engine's RMSNorm as TENorm builds it: zero_centered_gamma (--apply-layernorm-1p) computes
    x·(1 + w), w from 0."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **_):
        super().__init__()
        self.centred, self.eps = config.layernorm_zero_centered_gamma, eps
        self.weight = torch.nn.Parameter(torch.zeros(hidden_size) if self.centred else torch.ones(hidden_size))

    def forward(self, x):
        return _rms_norm(x, self.weight, self.centred, self.eps)


def _norm_column_linear():
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear

    class NormColumnParallelLinear(ColumnParallelLinear):
        """TELayerNormColumnParallelLinear's names and function: the input norm's `layer_norm_weight` (replicated),
        then megatron-core's column-parallel linear."""

        def __init__(self, input_size, output_size, *, config, **kwargs):
            super().__init__(input_size, output_size, config=config, **kwargs)
            self.centred, self.eps = config.layernorm_zero_centered_gamma, config.layernorm_epsilon
            self.layer_norm_weight = torch.nn.Parameter(torch.zeros(input_size) if self.centred
                                                        else torch.ones(input_size))

        def forward(self, x, *args, **kwargs):
            return super().forward(_rms_norm(x, self.layer_norm_weight, self.centred, self.eps), *args, **kwargs)
    return NormColumnParallelLinear


class CpuTESpec:
    """Transformer Engine's BackendSpecProvider on CPU: megatron-core's local linear layers and attention, with TE's
    fused input norms (`linear_qkv.layer_norm_weight`, `in_proj.layer_norm_weight`) and norms (CenteredRMSNorm)."""

    def linear(self):
        from megatron.core.tensor_parallel.layers import ColumnParallelLinear
        return ColumnParallelLinear

    def column_parallel_linear(self):
        from megatron.core.tensor_parallel.layers import ColumnParallelLinear
        return ColumnParallelLinear

    def row_parallel_linear(self):
        from megatron.core.tensor_parallel.layers import RowParallelLinear
        return RowParallelLinear

    def fuse_layernorm_and_linear(self) -> bool:
        return True

    def column_parallel_layer_norm_linear(self):
        return _norm_column_linear()

    def layer_norm(self, rms_norm: bool = False, for_qk: bool = False):
        return CenteredRMSNorm

    def core_attention(self):
        from megatron.core.transformer.dot_product_attention import DotProductAttention
        return DotProductAttention

    def grouped_mlp_modules(self, moe_use_grouped_gemm: bool, moe_use_legacy_grouped_gemm: bool):
        from megatron.core.models.backends import LocalSpecProvider
        return LocalSpecProvider().grouped_mlp_modules(False, False)

    def activation_func(self):
        return None


def _sliding_window_mask(sq: int, skv: int, window_size):
    """megatron-core's get_sliding_window_causal_mask (True = masked), on the CPU instead of "cuda"."""
    keep = torch.ones(sq, skv, dtype=torch.bool).triu(skv - sq - window_size[0]).tril(skv - sq + window_size[1])
    return ~keep


class CausalCoreAttention(torch.nn.Module):
    """Causal softmax attention with Megatron's softmax_scale, for MLA: megatron-core 0.16's local
    DotProductAttention takes no k_channels (its MLA needs Transformer Engine's), so MLA runs on CPU with this
    stand-in; everything around the core (projections, latent norms, rotary, scale) stays megatron-core's."""

    def __init__(self, config, layer_number, attn_mask_type, attention_type, softmax_scale=None, **_):
        super().__init__()
        self.scale = softmax_scale

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))      # [s, b, heads, d] -> [b, heads, s, d]
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return out.permute(2, 0, 1, 3).reshape(out.shape[2], out.shape[0], -1)   # [s, b, heads x dv]


def _with_causal_core(spec):
    for layer in spec.layer_specs:
        layer.submodules.self_attention.submodules.core_attention = CausalCoreAttention
    return spec


def transformer_config(s: Shape, tp: int, pp: int, ep: int, vpp: Optional[int]):
    from megatron.core.transformer import TransformerConfig
    from megatron.core.transformer.transformer_config import MLATransformerConfig
    act = torch.nn.functional.silu if s.swiglu else torch.nn.functional.gelu
    moe = dict(num_moe_experts=s.experts, moe_router_topk=s.topk, moe_ffn_hidden_size=s.moe_ffn,
               moe_token_dispatcher_type="allgather", moe_aux_loss_coeff=0.0) if s.experts else {}
    kwargs = dict(
        num_layers=s.layers, hidden_size=s.hidden, num_attention_heads=s.heads, num_query_groups=s.groups,
        ffn_hidden_size=s.ffn, normalization="RMSNorm" if s.rms else "LayerNorm", gated_linear_unit=s.swiglu,
        activation_func=act, add_bias_linear=s.bias, add_qkv_bias=s.bias, qk_layernorm=s.qk_norm,
        bias_activation_fusion=s.gelu_fusion, hidden_dropout=0.0, attention_dropout=0.0,
        use_cpu_initialization=True, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vpp, pipeline_dtype=torch.float32, expert_model_parallel_size=ep,
        masked_softmax_fusion=False, persist_layer_norm=False, bias_dropout_fusion=False)
    kwargs.update(moe)
    if s.mtp:
        kwargs.update(mtp_num_layers=s.mtp, mtp_loss_scaling_factor=0.1)
    kwargs.update(s.config)  # the shape's own fields win
    return (MLATransformerConfig if s.mla else TransformerConfig)(**kwargs)


def build_chunks(s: Shape, tp: int, pp: int, ep: int, vpp: Optional[int]):
    """This rank's model chunks (one per virtual stage), with every weight perturbed so norms and biases matter."""
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    config = transformer_config(s, tp, pp, ep, vpp)
    if s.gdn:  # megatron-core's only spec with Gated DeltaNet layers (Transformer Engine's, here CpuTESpec)
        from megatron.core.models.gpt.experimental_attention_variant_module_specs import (
            get_transformer_block_with_experimental_attention_variant_spec,
        )
        spec = get_transformer_block_with_experimental_attention_variant_spec(config)
    elif isinstance(config.moe_layer_freq, list):  # dense and MoE layers: a block spec
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec
        spec = get_gpt_decoder_block_spec(config, use_transformer_engine=False,
                                          normalization="RMSNorm" if s.rms else "LayerNorm")
        spec = _with_causal_core(spec) if s.mla else spec
    else:
        spec = get_gpt_layer_local_spec(num_experts=s.experts or None, qk_layernorm=s.qk_norm,
                                        normalization="RMSNorm" if s.rms else "LayerNorm",
                                        multi_latent_attention=s.mla)
    chunks = []
    for v in range(vpp or 1):
        torch.manual_seed(1234)
        first = ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=v) if vpp else ps.is_pipeline_first_stage()
        last = ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=v) if vpp else ps.is_pipeline_last_stage()
        mtp_spec = None
        if s.mtp and last:  # megatron-core puts every MTP layer on the last stage, the decoder's last layer inside
            from megatron.core.models.gpt.gpt_layer_specs import get_gpt_mtp_block_spec
            mtp_spec = get_gpt_mtp_block_spec(config, spec, use_transformer_engine=False)
        model = GPTModel(config, spec, vocab_size=PADDED, max_sequence_length=64, pre_process=first, post_process=last,
                         share_embeddings_and_output_weights=s.tied, mtp_block_spec=mtp_spec,
                         position_embedding_type="rope" if s.rope else "learned_absolute",
                         vp_stage=v if vpp else None, **s.model)
        perturb(model, (ps.get_pipeline_model_parallel_rank(), v, ps.get_tensor_model_parallel_rank(),
                        ps.get_expert_model_parallel_rank()))
        chunks.append(model)
    return chunks


def perturb(model, where) -> None:
    """Noise on every weight; replicated ones (norms, row-parallel biases, router) equal on every TP rank."""
    from fsdp2_core.checkpoint.megatron.layout import tp_dim
    with torch.no_grad():
        for name, p in model.named_parameters():
            pp_rank, v, tp_rank, ep_rank = where
            split = tp_dim(name) is not None or re.search(r"\.(in_proj\.weight|conv1d\.weight|A_log|dt_bias)$", name)
            key = (name, pp_rank, v, ep_rank if ".experts." in name else 0, tp_rank if split else 0)
            g = torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("router.expert_bias"):  # aux-loss-free balancing's bias, as training leaves it
                b.copy_(torch.randn(b.shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode()))) * 0.1)


def megatron_args(s: Shape, tp: int, pp: int, ep: int, vpp: Optional[int], fmt: str):
    """The Namespace megatron.training saves: every flag's destination at its default, the run's flags applied,
    and what validate_args / the training loop add (derived sizes, dtype, enums, counters)."""
    from megatron.core.transformer.enums import AttnBackend

    from megatron_compat.checkpoint_args import args_from_flags
    argv = ["--num-layers", str(s.layers), "--hidden-size", str(s.hidden), "--num-attention-heads", str(s.heads),
            "--ffn-hidden-size", str(s.ffn), "--seq-length", str(SEQ), "--max-position-embeddings", "64",
            "--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp),
            "--expert-model-parallel-size", str(ep), "--micro-batch-size", "1", "--global-batch-size", str(GBS),
            "--train-iters", "20", "--lr", "1e-3", "--min-lr", "1e-4", "--lr-decay-style", "cosine",
            "--lr-warmup-iters", "2", "--hidden-dropout", "0.0", "--attention-dropout", "0.0",
            "--make-vocab-size-divisible-by", "64", "--ckpt-format", fmt]
    if s.rope:
        argv += ["--position-embedding-type", "rope", "--no-position-embedding"]
    if s.rms:
        argv += ["--normalization", "RMSNorm"]
    if s.swiglu:
        argv += ["--swiglu"]
    if not s.bias:
        argv += ["--disable-bias-linear"]
    if s.groups != s.heads:
        argv += ["--group-query-attention", "--num-query-groups", str(s.groups)]
    if s.qk_norm:
        argv += ["--qk-layernorm"]
    if not s.tied:
        argv += ["--untie-embeddings-and-output-weights"]
    if s.experts:
        argv += ["--num-experts", str(s.experts), "--moe-router-topk", str(s.topk), "--moe-ffn-hidden-size",
                 str(s.moe_ffn)]
    if not s.gelu_fusion:
        argv += ["--no-bias-gelu-fusion"]
    if s.mtp:
        argv += ["--mtp-num-layers", str(s.mtp)]
    if vpp:
        argv += ["--num-layers-per-virtual-pipeline-stage", str(s.layers // (pp * vpp))]
    argv += list(s.flags)
    args = args_from_flags(argv)
    # validate_args and the training loop
    args.kv_channels = s.hidden // s.heads
    args.num_query_groups = s.groups
    args.add_qkv_bias = s.bias or args.add_qkv_bias
    args.virtual_pipeline_model_parallel_size = vpp
    args.padded_vocab_size = PADDED
    args.params_dtype = torch.float32
    args.attention_backend = AttnBackend.auto
    args.world_size = tp * pp * ep
    args.data_parallel_size = 1
    args.consumed_train_samples = ITERATION * GBS + 3   # not a multiple: proves it is read, not recomputed
    args.iteration = ITERATION
    for k, v in s.extra.items():
        setattr(args, k, v)
    return args


def scheduler_state(args):
    """Megatron's OptimizerParamScheduler, stepped to the checkpoint's position, as get_optimizer_param_scheduler
    builds it for iteration-based training."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    class _Opt:
        param_groups = [{"wd_mult": 1.0}]
    sched = OptimizerParamScheduler(
        _Opt(), init_lr=args.lr_warmup_init, max_lr=args.lr, min_lr=args.min_lr,
        lr_warmup_steps=args.lr_warmup_iters * args.global_batch_size,
        lr_decay_steps=args.train_iters * args.global_batch_size, lr_decay_style=args.lr_decay_style,
        start_wd=args.weight_decay, end_wd=args.weight_decay, wd_incr_steps=args.train_iters * args.global_batch_size,
        wd_incr_style=args.weight_decay_incr_style)
    sched.step(args.consumed_train_samples)
    return sched.state_dict()


def rng_state():
    """get_rng_state(ckpt_format='torch') on this rank (the CUDA state is the CPU one here)."""
    return [{"random_rng_state": random.getstate(), "np_rng_state": np.random.get_state(),
             "torch_rng_state": torch.get_rng_state(), "cuda_rng_state": torch.get_rng_state(),
             "rng_tracker_states": {}}]


def state_dict(args, chunks, sharded: bool):
    """generate_state_dict(args, model, optimizer=None, opt_param_scheduler, rng_state, iteration)."""
    out = {"args": args, "checkpoint_version": 3.0, "iteration": ITERATION}
    for i, chunk in enumerate(chunks):
        out["model" if len(chunks) == 1 else f"model{i}"] = (chunk.sharded_state_dict() if sharded
                                                             else chunk.state_dict_for_save_checkpoint())
    out["opt_param_scheduler"] = scheduler_state(args)
    out["num_floating_point_operations_so_far"] = 0
    return out


def save_legacy(save_dir: str, args, chunks) -> None:
    """save_checkpoint(...) with ckpt_type LEGACY: rank files, barrier, tracker."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    sd = state_dict(args, chunks, sharded=False)
    sd["rng_state"] = rng_state()
    pp, ep = args.pipeline_model_parallel_size, args.expert_model_parallel_size
    name = f"mp_rank_{ps.get_tensor_model_parallel_rank():02d}"
    if pp > 1:
        name += f"_{ps.get_pipeline_model_parallel_rank():03d}"
    if ep > 1:
        name += f"_{ps.get_expert_model_parallel_rank():03d}"
    if ps.get_expert_data_parallel_rank() == 0:
        path = os.path.join(save_dir, f"iter_{ITERATION:07d}", name, "model_optim_rng.pt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(sd, path)
    dist.barrier()
    if dist.get_rank() == 0:
        with open(os.path.join(save_dir, "latest_checkpointed_iteration.txt"), "w") as fh:
            fh.write(str(ITERATION))
    dist.barrier()


def save_dist(save_dir: str, args, chunks, with_optimizer: bool = False) -> None:
    """save_checkpoint(...) with ckpt_format torch_dist (and the optimizer state of fully_reshardable_optimizer)."""
    import torch.distributed as dist
    from megatron.core import dist_checkpointing
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    sd = state_dict(args, chunks, sharded=True)
    if with_optimizer:
        sd["optimizer"] = fully_reshardable_optimizer(sd["model"], args)
    pp_rank, tp_rank = ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank()
    sd["rng_state"] = ShardedObject("rng_state", rng_state(), (args.pipeline_model_parallel_size,
                                    args.tensor_model_parallel_size), (pp_rank, tp_rank),
                                    replica_id=ps.get_data_parallel_rank(with_context_parallel=True))
    path = os.path.join(save_dir, f"iter_{ITERATION:07d}")
    if dist.get_rank() == 0:
        os.makedirs(path, exist_ok=True)
    dist.barrier()
    dist_checkpointing.save(sd, path, content_metadata={"singleton_local_shards": False,
                                                        "chained_optim_avoid_prefix": True})
    dist.barrier()
    if dist.get_rank() == 0:
        with open(os.path.join(save_dir, "latest_checkpointed_iteration.txt"), "w") as fh:
            fh.write(str(ITERATION))
    dist.barrier()


def fully_reshardable_optimizer(model_sd, args) -> dict:
    """The distributed optimizer's state as --dist-ckpt-optim-fully-reshardable stores it
    (DistributedOptimizer.sharded_state_dict -> sharded_param_state_fully_reshardable: per model tensor K,
    `optimizer.state.<key>.K` made by replacing key and data of K's sharded metadata; the Adam step in the
    param groups). The moments are known functions of each weight (MOMENTS), so a test can tell where each
    one landed."""
    from dataclasses import replace

    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensorFactory
    from megatron.core.dist_checkpointing.utils import extract_sharded_tensors_and_factories
    tensors, _ = extract_sharded_tensors_and_factories(model_sd)
    param_state = {}
    for i, sh in enumerate(nested_values(tensors)):
        if not isinstance(sh.data, torch.nn.Parameter):
            continue
        param_state[i] = {}
        for key, fn in MOMENTS.items():
            kw = dict(key=f"optimizer.state.{key}.{sh.key}", data=fn(sh.data.detach()).contiguous())
            if not isinstance(sh, ShardedTensorFactory):
                kw["dtype"] = torch.float32
            param_state[i][key] = replace(sh, **kw)
    groups = [{"lr": args.lr, "weight_decay": args.weight_decay, "betas": (0.9, 0.999), "eps": 1e-8,
               "step": ITERATION}]
    return {"optimizer": {"param_groups": groups}, "param_state": param_state,
            "param_state_sharding_type": "fully_reshardable"}


def tokens(batch: int = 2, seq: int = SEQ) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(5))


def reference_logits(s: Shape, dist_dir: str, tp: int = 1):
    """megatron-core's own logits: a tp-way, single-stage model loading the torch_dist checkpoint with
    dist_checkpointing.load, gathered to full vocabulary."""
    return reference_outputs(s, dist_dir, tp)[0]


def reference_outputs(s: Shape, dist_dir: str, tp: int = 1):
    """(logits, MTP outputs: see model_outputs) of megatron-core's model loading the torch_dist checkpoint."""
    from megatron.core import dist_checkpointing
    (model,) = build_chunks(s, tp, 1, 1, None)
    sd = model.sharded_state_dict()
    loaded = dist_checkpointing.load({"model": sd}, dist_dir)
    model.load_state_dict(loaded["model"])
    return model_outputs(model, s)


def model_outputs(model, s: Shape):
    """(logits, MTP outputs) of a loaded single-stage model on `tokens()`, gathered over tp; with MTP layers (which
    megatron-core runs only when labels are given: labels = the tokens) each depth's logits and the per-token
    losses megatron-core computes from them, before its loss mask."""
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region
    model.eval()
    ids = tokens()
    pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    mask = torch.triu(torch.ones(1, 1, ids.shape[1], ids.shape[1], dtype=torch.bool), 1)
    with torch.no_grad():
        if not s.mtp:
            return gather_from_tensor_model_parallel_region(model(ids, pos, mask)).float(), {}
        seen, losses = [], []  # per call, the MTP depths first, the main head last
        # the logits [s, b, vocab / tp] copied: megatron-core's cross entropy then works on them in place
        handle = model.output_layer.register_forward_hook(lambda mod, inp, out: seen.append(out[0].clone()))
        token_losses = model.compute_language_model_loss

        def recorded(labels, logits):
            losses.append(token_losses(labels, logits))
            return losses[-1]
        model.compute_language_model_loss = recorded
        model(ids, pos, mask, labels=ids)
        handle.remove()
        del model.compute_language_model_loss
        whole = [gather_from_tensor_model_parallel_region(t).transpose(0, 1).float() for t in seen]
        return whole[-1], {"mtp_logits": whole[:-1], "mtp_token_losses": [t.float() for t in losses[:-1]]}


def build_all(root: str, names) -> None:
    """On every rank of a gloo world of 4: each shape's checkpoint in both formats (shapes of one parallel layout
    share one model-parallel setup), then with tp 1 and one stage megatron-core's reference logits from each
    torch_dist checkpoint, saved by rank 0 as <root>/<name>/logits.pt."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    patch_for_cpu()
    dist.init_process_group("gloo")
    layouts = {}
    for name in names:
        s = SHAPES[name]
        layouts.setdefault((s.tp, s.pp, s.vpp, s.ep), []).append(s)
    for (tp, pp, vpp, ep), shapes in layouts.items():
        ps.initialize_model_parallel(tp, pp, virtual_pipeline_model_parallel_size=vpp, expert_model_parallel_size=ep)
        for s in shapes:
            chunks = build_chunks(s, tp, pp, ep, vpp)
            for fmt, save in (("torch", save_legacy), ("torch_dist", save_dist)):
                save(os.path.join(root, s.name, fmt), megatron_args(s, tp, pp, ep, vpp, fmt), chunks)
            if s.name == "qwen3":
                save_dist(os.path.join(root, s.name, "torch_dist_optim"),
                          megatron_args(s, tp, pp, ep, vpp, "torch_dist"), chunks, with_optimizer=True)
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(1, 1)
    for name in names:
        logits, mtp = reference_outputs(SHAPES[name], os.path.join(root, name, "torch_dist", f"iter_{ITERATION:07d}"))
        if dist.get_rank() == 0:
            torch.save(logits, os.path.join(root, name, "logits.pt"))
            if mtp:
                torch.save(mtp, os.path.join(root, name, "mtp.pt"))
    ps.destroy_model_parallel()
    dist.barrier()
    dist.destroy_process_group()
