"""Megatron (canonical names, see layout.py) <-> Hugging Face tensors, per model family.

A `Group` ties a few Hugging Face tensors to the Megatron tensors they are made of, with
both conversions: a fused QKV is split per query group into q, k, v; a gated fc1 into
gate and up; the experts of one layer are stacked into transformers' fused
`gate_up_proj` [experts, 2 x ffn, hidden] and `down_proj` [experts, hidden, ffn];
GPT-2's Conv1D weights are the transposes of Megatron's linear weights. Groups are built
from the names the Hugging Face model has, so biases, q/k norms and dense layers inside
a MoE model follow the model's own config.
"""
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

import torch

from ..layout import CheckpointError
from .layout import expert_name, layer_name, mtp_layer_prefix, mtp_name

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral", "qwen2_moe", "glm4_moe", "deepseek_v2",
              "deepseek_v3", "gpt_oss", "qwen3_next", "granite", "stablelm")
FAMILIES = LLAMA_LIKE + ("gpt2", "opt")
UNGATED = ("gpt2", "opt")  # a plain GeLU MLP: fc1 is one projection, not [gate; up]

Tensors = Dict[str, torch.Tensor]


@dataclass
class Group:
    hf: List[str]
    mg: List[str]
    to_hf: Callable[[Tensors], Tensors]
    to_mg: Callable[[Tensors], Tensors]
    alias: bool = field(default=False)   # a Hugging Face copy of tensors other groups make (MTP's embed/head)


def _same(hf: str, mg: str, transpose: bool = False) -> Group:
    flip = (lambda t: t.t().contiguous()) if transpose else (lambda t: t)
    return Group([hf], [mg], lambda m: {hf: flip(m[mg])}, lambda h: {mg: flip(h[hf])})


# ---------------------------------------------------------------- fused QKV

def split_qkv(t: torch.Tensor, heads: int, groups: int, head_dim: int):
    """Megatron's [q x heads/groups, k, v] per query group -> q [heads x d], k, v [groups x d] (rows)."""
    per = heads // groups
    rest = t.shape[1:]
    shaped = t.reshape(groups, (per + 2) * head_dim, *rest)
    q = shaped[:, :per * head_dim].reshape(heads * head_dim, *rest)
    k = shaped[:, per * head_dim:(per + 1) * head_dim].reshape(groups * head_dim, *rest)
    v = shaped[:, (per + 1) * head_dim:].reshape(groups * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def merge_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, groups: int, head_dim: int):
    per = heads // groups
    rest = q.shape[1:]
    parts = [q.reshape(groups, per * head_dim, *rest), k.reshape(groups, head_dim, *rest),
             v.reshape(groups, head_dim, *rest)]
    return torch.cat(parts, dim=1).reshape(-1, *rest).contiguous()


def _attention_shape(config):
    heads = config.num_attention_heads
    groups = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads, groups, head_dim


def _qkv_group(config, i: int, kind: str, prefix: str) -> Group:
    shape = _attention_shape(config)
    names = [f"{prefix}.self_attn.{p}_proj.{kind}" for p in "qkv"]
    mg = layer_name(i, f"self_attention.linear_qkv.{kind}")

    def to_hf(m):
        return dict(zip(names, split_qkv(m[mg], *shape)))

    def to_mg(h):
        return {mg: merge_qkv(*(h[n] for n in names), *shape)}
    return Group(names, [mg], to_hf, to_mg)


def _gpt2_qkv_group(config, i: int, kind: str) -> Group:
    heads = config.n_head
    head_dim = config.n_embd // heads
    hf = f"transformer.h.{i}.attn.c_attn.{kind}"
    mg = layer_name(i, f"self_attention.linear_qkv.{kind}")

    def to_hf(m):
        fused = torch.cat(split_qkv(m[mg], heads, heads, head_dim), dim=0)  # [q; k; v], all heads each
        return {hf: fused.t().contiguous() if kind == "weight" else fused}

    def to_mg(h):
        fused = h[hf].t() if kind == "weight" else h[hf]
        return {mg: merge_qkv(*fused.chunk(3, dim=0), heads, heads, head_dim)}
    return Group([hf], [mg], to_hf, to_mg)


def _gated_qkv_group(config, i: int, prefix: str) -> Group:
    """Qwen3-Next's gated full attention: q_proj holds per head [q; gate] (transformers' Qwen3NextAttention),
    megatron-core's linear_qkv (--attention-output-gate) per query group [q x heads/groups, gate x heads/groups, k, v].
    """
    heads, groups, d = _attention_shape(config)
    per = heads // groups
    names = [f"{prefix}.self_attn.{p}_proj.weight" for p in "qkv"]
    mg = layer_name(i, "self_attention.linear_qkv.weight")

    def to_hf(m):
        w = m[mg]
        shaped = w.reshape(groups, (2 * per + 2) * d, w.shape[-1])
        q, gate, k, v = shaped.split([per * d, per * d, d, d], dim=1)
        q_proj = torch.stack([q.reshape(heads, d, -1), gate.reshape(heads, d, -1)], dim=1).reshape(2 * heads * d, -1)
        return dict(zip(names, (q_proj.contiguous(), k.reshape(groups * d, -1).contiguous(),
                                v.reshape(groups * d, -1).contiguous())))

    def to_mg(h):
        q_proj, k, v = (h[n] for n in names)
        hidden = q_proj.shape[-1]
        qg = q_proj.reshape(heads, 2, d, hidden)
        parts = [qg[:, 0].reshape(groups, per * d, hidden), qg[:, 1].reshape(groups, per * d, hidden),
                 k.reshape(groups, d, hidden), v.reshape(groups, d, hidden)]
        return {mg: torch.cat(parts, dim=1).reshape(-1, hidden).contiguous()}
    return Group(names, [mg], to_hf, to_mg)


# ---------------------------------------------------------------- Gated DeltaNet (Qwen3-Next's linear attention)

def _gdn_shape(config):
    nk, nv = config.linear_num_key_heads, config.linear_num_value_heads
    return nk, nv // nk, config.linear_key_head_dim, config.linear_value_head_dim


def _gdn_in_proj_group(config, i: int, prefix: str, which: str) -> Group:
    """transformers' in_proj_qkvz [per key head: q, k, v and z of its value heads] and in_proj_ba [per key head: b
    then a of its value heads] from megatron-core's in_proj parts (query, key, value, z, beta, alpha), each whole
    in head order."""
    nk, r, dk, dv = _gdn_shape(config)
    hf = f"{prefix}.linear_attn.in_proj_{which}.weight"
    parts, rows = (("query", "key", "value", "z"), [dk, dk, r * dv, r * dv]) if which == "qkvz" else \
        (("beta", "alpha"), [r, r])
    mg = [layer_name(i, f"self_attention.in_proj.weight.{p}") for p in parts]

    def to_hf(m):
        hidden = m[mg[0]].shape[-1]
        per_head = [m[n].reshape(nk, n_rows, hidden) for n, n_rows in zip(mg, rows)]
        return {hf: torch.cat(per_head, dim=1).reshape(-1, hidden).contiguous()}

    def to_mg(h):
        hidden = h[hf].shape[-1]
        split = h[hf].reshape(nk, sum(rows), hidden).split(rows, dim=1)
        return {n: t.reshape(-1, hidden).contiguous() for n, t in zip(mg, split)}
    return Group([hf], mg, to_hf, to_mg)


def _gdn_conv_group(config, i: int, prefix: str) -> Group:
    """The causal convolution's channels [q; k; v] (all heads each) on both sides; Megatron stores the three apart."""
    nk, r, dk, dv = _gdn_shape(config)
    hf = f"{prefix}.linear_attn.conv1d.weight"
    mg = [layer_name(i, f"self_attention.conv1d.weight.{p}") for p in ("query", "key", "value")]
    sizes = [nk * dk, nk * dk, nk * r * dv]
    return Group([hf], mg, lambda m: {hf: torch.cat([m[n] for n in mg], dim=0)},
                 lambda h: {n: t.contiguous() for n, t in zip(mg, h[hf].split(sizes, dim=0))})


def _gdn_out_norm_group(name: str, i: int) -> Group:
    """The gated output norm: transformers' Qwen3NextRMSNormGated multiplies by w, megatron-core's out_norm (built
    with zero-centred gamma, --apply-layernorm-1p, which the args must have) by 1 + w."""
    mg = layer_name(i, "self_attention.out_norm.weight")
    return Group([name], [mg], lambda m: {name: m[mg] + 1}, lambda h: {mg: h[name] - 1})


_GDN_SAME = {"linear_attn.A_log": "self_attention.A_log", "linear_attn.dt_bias": "self_attention.dt_bias",
             "linear_attn.out_proj.weight": "self_attention.out_proj.weight"}


# ---------------------------------------------------------------- gated MLP and experts

def _gated_group(prefix: str, i: int, kind: str, hf_mlp: str = "mlp", mg_mlp: str = "mlp") -> Group:
    """A gated MLP's gate and up projections from Megatron's fc1 [gate; up]; `hf_mlp` / `mg_mlp` name the MLP
    (the shared experts: shared_experts or Qwen2-MoE's shared_expert, Megatron's mlp.shared_experts)."""
    gate, up = f"{prefix}.{hf_mlp}.gate_proj.{kind}", f"{prefix}.{hf_mlp}.up_proj.{kind}"
    mg = layer_name(i, f"{mg_mlp}.linear_fc1.{kind}")

    def to_hf(m):
        g, u = m[mg].chunk(2, dim=0)
        return {gate: g.contiguous(), up: u.contiguous()}
    return Group([gate, up], [mg], to_hf, lambda h: {mg: torch.cat([h[gate], h[up]], dim=0)})


def _experts_group(hf: str, i: int, which: str, experts: int) -> Group:
    mg = [expert_name(i, e, f"linear_fc{which}.weight") for e in range(experts)]

    def to_hf(m):
        return {hf: torch.stack([m[n] for n in mg])}

    def to_mg(h):
        return {n: h[hf][e].contiguous() for e, n in enumerate(mg)}
    return Group([hf], mg, to_hf, to_mg)


def _interleaved_experts_group(hf: str, i: int, kind: str, experts: int) -> Group:
    """gpt-oss's fused experts: gate_up_proj [experts, hidden, 2 x ffn] (its bias [experts, 2 x ffn]) with gate and
    up columns alternating, from each expert's Megatron fc1 [gate; up] rows (transposed for the weight)."""
    mg = [expert_name(i, e, f"linear_fc1.{kind}") for e in range(experts)]

    def to_hf(m):
        rows = torch.stack([torch.stack(m[n].chunk(2, dim=0), dim=1).flatten(0, 1) for n in mg])
        return {hf: rows.transpose(1, 2).contiguous() if kind == "weight" else rows}

    def to_mg(h):
        rows = h[hf].transpose(1, 2) if kind == "weight" else h[hf]
        return {n: torch.cat([rows[e][0::2], rows[e][1::2]], dim=0).contiguous() for e, n in enumerate(mg)}
    return Group([hf], mg, to_hf, to_mg)


def _transposed_experts_group(hf: str, i: int, experts: int) -> Group:
    """gpt-oss's down_proj [experts, ffn, hidden]: each expert's Megatron fc2 weight [hidden, ffn] transposed."""
    mg = [expert_name(i, e, "linear_fc2.weight") for e in range(experts)]

    def to_hf(m):
        return {hf: torch.stack([m[n].t() for n in mg]).contiguous()}

    def to_mg(h):
        return {n: h[hf][e].t().contiguous() for e, n in enumerate(mg)}
    return Group([hf], mg, to_hf, to_mg)


def _experts_bias_group(hf: str, i: int, experts: int) -> Group:
    """gpt-oss's down_proj_bias [experts, hidden]: each expert's fc2 bias."""
    mg = [expert_name(i, e, "linear_fc2.bias") for e in range(experts)]
    return Group([hf], mg, lambda m: {hf: torch.stack([m[n] for n in mg])},
                 lambda h: {n: h[hf][e].contiguous() for e, n in enumerate(mg)})


def _num_experts(config) -> int:
    return getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) or 0


# ---------------------------------------------------------------- families

_LLAMA_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_GPT2_LAYER = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")
_OPT_LAYER = re.compile(r"^model\.decoder\.layers\.(\d+)\.(.+)$")
_LLAMA_SAME = {"input_layernorm.weight": "input_layernorm.weight",
               "post_attention_layernorm.weight": "pre_mlp_layernorm.weight",
               # StableLM: LayerNorms, with biases
               "input_layernorm.bias": "input_layernorm.bias",
               "post_attention_layernorm.bias": "pre_mlp_layernorm.bias",
               "self_attn.o_proj.weight": "self_attention.linear_proj.weight",
               "self_attn.o_proj.bias": "self_attention.linear_proj.bias",
               "self_attn.q_norm.weight": "self_attention.q_layernorm.weight",
               "self_attn.k_norm.weight": "self_attention.k_layernorm.weight",
               "mlp.down_proj.weight": "mlp.linear_fc2.weight", "mlp.down_proj.bias": "mlp.linear_fc2.bias",
               "mlp.gate.weight": "mlp.router.weight",
               # gpt-oss: a router with a bias; learnable softmax offsets per head (Megatron's softmax_type learnable)
               "mlp.router.weight": "mlp.router.weight", "mlp.router.bias": "mlp.router.bias",
               "self_attn.sinks": "self_attention.core_attention.softmax_offset",
               # DeepSeek-V3 / GLM-4.5: the router's expert bias; shared experts (Qwen2-MoE: one, gated)
               "mlp.gate.e_score_correction_bias": "mlp.router.expert_bias",
               "mlp.shared_experts.down_proj.weight": "mlp.shared_experts.linear_fc2.weight",
               "mlp.shared_expert.down_proj.weight": "mlp.shared_experts.linear_fc2.weight",
               "mlp.shared_expert_gate.weight": "mlp.shared_experts.gate_weight",
               # Multi-Latent Attention (DeepSeek-V3): the same row layouts on both sides (per head [nope, rope] for
               # q, [nope, v] for kv; the kv down-projection's [latent, shared rotary key])
               "self_attn.q_a_proj.weight": "self_attention.linear_q_down_proj.weight",
               "self_attn.q_a_layernorm.weight": "self_attention.q_layernorm.weight",
               "self_attn.q_b_proj.weight": "self_attention.linear_q_up_proj.weight",
               "self_attn.kv_a_proj_with_mqa.weight": "self_attention.linear_kv_down_proj.weight",
               "self_attn.kv_a_layernorm.weight": "self_attention.kv_layernorm.weight",
               "self_attn.kv_b_proj.weight": "self_attention.linear_kv_up_proj.weight"}
_GPT2_SAME = {"ln_1.weight": ("input_layernorm.weight", False), "ln_1.bias": ("input_layernorm.bias", False),
              "ln_2.weight": ("pre_mlp_layernorm.weight", False), "ln_2.bias": ("pre_mlp_layernorm.bias", False),
              "attn.c_proj.weight": ("self_attention.linear_proj.weight", True),
              "attn.c_proj.bias": ("self_attention.linear_proj.bias", False),
              "mlp.c_fc.weight": ("mlp.linear_fc1.weight", True), "mlp.c_fc.bias": ("mlp.linear_fc1.bias", False),
              "mlp.c_proj.weight": ("mlp.linear_fc2.weight", True), "mlp.c_proj.bias": ("mlp.linear_fc2.bias", False)}


def groups_for(config, hf_names: Sequence[str]) -> List[Group]:
    """The groups that produce exactly `hf_names` (the tensors the Hugging Face model stores)."""
    family = config.model_type
    if family not in FAMILIES:
        raise CheckpointError(f"model_type {family}: Megatron checkpoints map to {', '.join(FAMILIES)} here")
    build = {"gpt2": _gpt2_group, "opt": _opt_group}.get(family, _llama_group)
    groups, seen = [], set()
    for name in hf_names:
        if name in seen:
            continue
        group = build(config, name)
        if group is None:
            raise CheckpointError(f"{name}: a tensor of the {family} model with no Megatron counterpart")
        seen.update(group.hf)
        groups.append(group)
    return groups


# MTP depth k (Hugging Face model.layers.<L+k>, models/mtp.py) outside its decoder layer
_MTP_OWN = {"enorm.weight": "enorm.weight", "hnorm.weight": "hnorm.weight", "eh_proj.weight": "eh_proj.weight",
            "shared_head.norm.weight": "final_layernorm.weight"}


def _mtp_group(config, name: str, i: int, rest: str):
    """A tensor of MTP layer i (>= num_hidden_layers): its own norms and projection, DeepSeek-V3's copies of the
    shared embedding and head (read from the main model's, never written back), or its decoder layer's tensors
    under megatron-core's mtp.layers.<k>.transformer_layer."""
    k = i - config.num_hidden_layers
    if rest in _MTP_OWN:
        return _same(name, mtp_name(k, _MTP_OWN[rest]))
    if rest in ("embed_tokens.weight", "shared_head.head.weight"):
        tied = rest == "embed_tokens.weight" or getattr(config, "tie_word_embeddings", False)
        src = "embedding.word_embeddings.weight" if tied else "output_layer.weight"
        return Group([name], [src], lambda m: {name: m[src]}, lambda h: {}, alias=True)
    group = _layer_group(config, name, i, rest)
    return None if group is None else _renamed(group, layer_name(i, ""), mtp_layer_prefix(k))


def _renamed(group: Group, old: str, new: str) -> Group:
    """The same group with its Megatron names under another prefix."""
    to_new = {n: new + n[len(old):] for n in group.mg}
    to_old = {v: n for n, v in to_new.items()}
    return Group(group.hf, [to_new[n] for n in group.mg],
                 lambda m: group.to_hf({to_old[n]: t for n, t in m.items()}),
                 lambda h: {to_new[n]: t for n, t in group.to_mg(h).items()})


def _llama_group(config, name: str):
    top = {"model.embed_tokens.weight": "embedding.word_embeddings.weight",
           "model.norm.weight": "decoder.final_layernorm.weight", "model.norm.bias": "decoder.final_layernorm.bias",
           "lm_head.weight": "output_layer.weight"}
    if name in top:
        return _same(name, top[name])
    m = _LLAMA_LAYER.match(name)
    if not m:
        return None
    i, rest = int(m.group(1)), m.group(2)
    if i >= config.num_hidden_layers:
        return _mtp_group(config, name, i, rest)
    return _layer_group(config, name, i, rest)


def _layer_group(config, name: str, i: int, rest: str):
    prefix = f"model.layers.{i}"
    if rest in _LLAMA_SAME:
        return _same(name, layer_name(i, _LLAMA_SAME[rest]))
    if config.model_type in ("deepseek_v2", "deepseek_v3") and rest == "self_attn.q_proj.weight":  # MLA, no q LoRA
        return _same(name, layer_name(i, "self_attention.linear_q_proj.weight"))
    if config.model_type == "qwen3_next":
        if rest in _GDN_SAME:
            return _same(name, layer_name(i, _GDN_SAME[rest]))
        if (x := re.fullmatch(r"linear_attn\.in_proj_(qkvz|ba)\.weight", rest)):
            return _gdn_in_proj_group(config, i, prefix, x.group(1))
        if rest == "linear_attn.conv1d.weight":
            return _gdn_conv_group(config, i, prefix)
        if rest == "linear_attn.norm.weight":
            return _gdn_out_norm_group(name, i)
        if re.fullmatch(r"self_attn\.[qkv]_proj\.weight", rest):
            return _gated_qkv_group(config, i, prefix)
    if (x := re.fullmatch(r"self_attn\.[qkv]_proj\.(weight|bias)", rest)):
        return _qkv_group(config, i, x.group(1), prefix)
    if (x := re.fullmatch(r"mlp\.(?:gate|up)_proj\.(weight|bias)", rest)):
        return _gated_group(prefix, i, x.group(1))
    if (x := re.fullmatch(r"mlp\.(shared_experts?)\.(?:gate|up)_proj\.weight", rest)):
        return _gated_group(prefix, i, "weight", f"mlp.{x.group(1)}", "mlp.shared_experts")
    if config.model_type == "gpt_oss":
        experts = _num_experts(config)
        if (x := re.fullmatch(r"mlp\.experts\.gate_up_proj(_bias)?", rest)):
            return _interleaved_experts_group(name, i, "bias" if x.group(1) else "weight", experts)
        if rest == "mlp.experts.down_proj":
            return _transposed_experts_group(name, i, experts)
        if rest == "mlp.experts.down_proj_bias":
            return _experts_bias_group(name, i, experts)
    if rest == "mlp.experts.gate_up_proj":
        return _experts_group(name, i, "1", _num_experts(config))
    if rest == "mlp.experts.down_proj":
        return _experts_group(name, i, "2", _num_experts(config))
    return None


def _gpt2_group(config, name: str):
    top = {"transformer.wte.weight": "embedding.word_embeddings.weight",
           "transformer.wpe.weight": "embedding.position_embeddings.weight",
           "transformer.ln_f.weight": "decoder.final_layernorm.weight",
           "transformer.ln_f.bias": "decoder.final_layernorm.bias", "lm_head.weight": "output_layer.weight"}
    if name in top:
        return _same(name, top[name])
    m = _GPT2_LAYER.match(name)
    if not m:
        return None
    i, rest = int(m.group(1)), m.group(2)
    if rest in _GPT2_SAME:
        mg, transpose = _GPT2_SAME[rest]
        return _same(name, layer_name(i, mg), transpose)
    if (x := re.fullmatch(r"attn\.c_attn\.(weight|bias)", rest)):
        return _gpt2_qkv_group(config, i, x.group(1))
    return None


# OPT (learned positions, no linear biases): Megatron's names, the positions two rows further on (OPT's offset)
_OPT_SAME = {"self_attn_layer_norm.weight": "input_layernorm.weight",
             "self_attn_layer_norm.bias": "input_layernorm.bias",
             "final_layer_norm.weight": "pre_mlp_layernorm.weight", "final_layer_norm.bias": "pre_mlp_layernorm.bias",
             "self_attn.out_proj.weight": "self_attention.linear_proj.weight", "fc1.weight": "mlp.linear_fc1.weight",
             "fc2.weight": "mlp.linear_fc2.weight"}
OPT_POSITION_OFFSET = 2


def _opt_positions_group(name: str) -> Group:
    mg = "embedding.position_embeddings.weight"

    def to_hf(m):
        rows = m[mg]
        return {name: torch.cat([rows.new_zeros(OPT_POSITION_OFFSET, rows.shape[1]), rows])}

    def to_mg(h):
        return {mg: h[name][OPT_POSITION_OFFSET:].contiguous()}
    return Group([name], [mg], to_hf, to_mg)


def _opt_group(config, name: str):
    top = {"model.decoder.embed_tokens.weight": "embedding.word_embeddings.weight",
           "model.decoder.final_layer_norm.weight": "decoder.final_layernorm.weight",
           "model.decoder.final_layer_norm.bias": "decoder.final_layernorm.bias",
           "lm_head.weight": "output_layer.weight"}
    if name in top:
        return _same(name, top[name])
    if name == "model.decoder.embed_positions.weight":
        return _opt_positions_group(name)
    m = _OPT_LAYER.match(name)
    if not m:
        return None
    i, rest = int(m.group(1)), m.group(2)
    if rest in _OPT_SAME:
        return _same(name, layer_name(i, _OPT_SAME[rest]))
    if re.fullmatch(r"self_attn\.[qkv]_proj\.weight", rest):
        return _qkv_group(config, i, "weight", f"model.decoder.layers.{i}")
    return None


VOCAB_TENSORS = ("model.embed_tokens.weight", "lm_head.weight", "transformer.wte.weight",
                 "model.decoder.embed_tokens.weight")


def is_vocab_tensor(name: str) -> bool:
    """Rows per vocabulary entry: the embedding, the head and the MTP layers' copies of them."""
    return name in VOCAB_TENSORS or bool(re.fullmatch(r"model\.layers\.\d+\.(embed_tokens|shared_head\.head)\.weight",
                                                      name))
