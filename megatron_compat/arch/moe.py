"""Megatron MoE flags -> a Hugging Face MoE family's router, expert and shared-expert fields, and back.

Megatron's router (megatron-core 0.16, moe_utils.topk_routing_with_score_function):
  softmax (default)  the softmax over the top-k logits: the top-k probabilities renormalised; with
                     --moe-router-pre-softmax the probabilities over all experts, not renormalised
  sigmoid            sigmoid scores, plus the expert bias for the choice only (--moe-router-enable-expert-bias),
                     top k within the best --moe-router-group-topk of --moe-router-num-groups groups (ranked by the
                     sum of their top k / group-topk scores), renormalised when k > 1
  and --moe-router-topk-scaling-factor multiplies the weights. The family that computes the same:
  softmax, no shared experts            qwen3_moe (norm_topk_prob = renormalised; it has q/k norms), else mixtral
                                        (always renormalised)
  softmax, one gated shared expert      qwen2_moe (--moe-shared-expert-gate)
  sigmoid, ungated shared experts       glm4_moe (GLM-4.5), or deepseek_v3 with Multi-Latent Attention; their
                                        groups are ranked by the sum of their top two scores (k / group-topk = 2)
  softmax with Multi-Latent Attention   deepseek_v2: softmax over all experts, not renormalised (--moe-router-pre-
                                        softmax, or MindSpeed's group_limited_greedy), optionally scaled, ungated
                                        shared experts; its groups are ranked by their best score, which is
                                        Megatron's rule when k / group-topk = 1 and MindSpeed's group_limited_greedy
Shared experts: --moe-shared-expert-intermediate-size S (MindSpeed: --n-shared-experts N, S = N × the expert width).
Dense layers: --first-k-dense-replace K (MindSpeed) or --moe-layer-freq N / [0]*3+[1]*58 (1 marks an MoE layer).

Load balancing (--moe-router-load-balancing-type with --moe-aux-loss-coeff, a list of each allowed):
  aux_loss      the Hugging Face config's router_aux_loss_coef (with output_router_logits)
  seq_aux_loss  model.moe_seq_aux_loss_coeff
  none          no loss
  MindSpeed: softmax_topk (softmax over all experts, no loss, not renormalised), noaux_tc (no loss: DeepSeek-V3's
  aux-loss-free routing), group_limited_greedy (DeepSeek-V2: softmax over all experts, groups ranked by their best
  score, the expert-level loss with --moe-aux-loss-coeff, sequence-level with --seq-aux), pai_megatron_aux_loss
  (softmax over all experts, unscaled, megatron-core's aux loss), --seq-aux with none /
  noaux_tc (the sequence-level loss with --moe-aux-loss-coeff),
  --norm-topk-prob with aux_loss (renormalises after --moe-router-pre-softmax).
--moe-z-loss-coeff -> model.moe_z_loss_coeff; --moe-router-enable-expert-bias -> model.moe_router_bias_update_rate
(--moe-router-bias-update-rate, 1e-3 by default). The engine computes all of them as megatron-core does
(fsdp2_core/models/router_losses.py).
"""
import ast
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from . import ArchitectureError

SIGMOID_FAMILIES = ("glm4_moe", "deepseek_v3", "glm_moe_dsa")  # glm_moe_dsa: arch/dsa.py
MOE_FAMILIES = ("qwen3_moe", "mixtral", "qwen2_moe", "deepseek_v2", "gpt_oss", "minimax_m2") + SIGMOID_FAMILIES
# The model_id whose forward (our token dispatch, router losses, expert bias, expert parallelism) serves each.
ENGINE_MODEL_ID = {"qwen3_moe": "qwen3_moe", "mixtral": "qwen3_moe", "qwen2_moe": "qwen2_moe",
                   "glm4_moe": "deepseek_v3", "deepseek_v3": "deepseek_v3", "deepseek_v2": "deepseek_v2",
                   "gpt_oss": "gpt_oss", "minimax_m2": "minimax_m2", "glm_moe_dsa": "deepseek_v32",
                   "qwen3_next": "qwen2_moe"}  # Qwen3-Next's MoE block is Qwen2-MoE's (a gated shared expert)


@dataclass
class Routing:
    experts: int
    topk: int
    ffn: int                         # each expert's width
    score: str = "softmax"
    renorm: bool = True              # the top-k weights sum to one
    groups: int = 1
    group_topk: int = 1
    scaling: float = 1.0
    expert_bias: bool = False
    aux: float = 0.0                 # aux_loss coefficient (the Hugging Face config's router_aux_loss_coef)
    shared_ffn: int = 0              # total width of the shared experts (0: none)
    shared_gate: bool = False
    dense_layers: List[int] = field(default_factory=list)
    group_limited: bool = False      # MindSpeed's group_limited_greedy: groups ranked by their best score


def _first(g, *flags, default=None):
    for flag in flags:
        if g.get(flag) is not None:
            return g[flag]
    return default


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class Balancing:
    aux: float = 0.0                 # aux_loss coefficient
    seq: float = 0.0                 # seq_aux_loss coefficient
    pre_softmax: bool = False        # softmax over all experts (MindSpeed softmax_topk, group_limited_greedy)
    renorm_after: bool = False       # MindSpeed's --norm-topk-prob with aux_loss
    group_limited: bool = False      # MindSpeed's group_limited_greedy (DeepSeek-V2's router)
    unscaled: bool = False           # MindSpeed's pai_megatron_aux_loss, which never scales the weights


def balancing(g) -> Balancing:
    """The load-balancing types with their coefficients, and what MindSpeed's types say about the router."""
    types = _as_list(g.get("--moe-router-load-balancing-type", "aux_loss"))
    coeffs = _as_list(g.get("--moe-aux-loss-coeff", 0.0))
    if len(coeffs) == 1 and len(types) > 1:
        coeffs = coeffs * len(types)
    if len(coeffs) != len(types):
        raise ArchitectureError(f"--moe-router-load-balancing-type {' '.join(types)} with --moe-aux-loss-coeff "
                                f"{' '.join(map(str, coeffs))}: give one coefficient per type")
    b = Balancing()
    for kind, coeff in zip(types, coeffs):
        if kind == "aux_loss":
            b.aux = float(coeff)
            b.renorm_after = bool(g.get("--norm-topk-prob"))
        elif kind == "seq_aux_loss":
            b.seq = float(coeff)
        elif kind in ("none", "noaux_tc"):
            if g.get("--seq-aux"):
                b.seq = float(coeff)
        elif kind == "softmax_topk":
            b.pre_softmax = True
        elif kind == "group_limited_greedy":
            # MindSpeed's DeepSeek-V2 router: its expert-level loss turns sequence-level with --seq-aux
            b.pre_softmax = b.group_limited = True
            if g.get("--seq-aux"):
                b.seq = float(coeff)
            else:
                b.aux = float(coeff)
        elif kind == "pai_megatron_aux_loss":
            # MindSpeed: the softmax over all experts, its top k unscaled, megatron-core's aux loss on them
            b.pre_softmax = b.unscaled = True
            b.aux = float(coeff)
        elif kind == "global_aux_loss":
            raise ArchitectureError("--moe-router-load-balancing-type global_aux_loss balances the loads of the whole "
                                    "global batch, which the engine does not compute; use aux_loss or seq_aux_loss")
        else:
            raise ArchitectureError(f"--moe-router-load-balancing-type {kind} has no equivalent here; use aux_loss, "
                                    "seq_aux_loss or none (MindSpeed: softmax_topk, noaux_tc, group_limited_greedy, "
                                    "pai_megatron_aux_loss)")
    return b


def training_fields(g) -> Dict[str, Any]:
    """The router settings that live in the engine's config, not in the Hugging Face one."""
    out: Dict[str, Any] = {}
    seq = balancing(g).seq
    if seq:
        out["moe_seq_aux_loss_coeff"] = seq
    if g.get("--moe-z-loss-coeff"):
        out["moe_z_loss_coeff"] = float(g["--moe-z-loss-coeff"])
    out.update(group_balance_fields(g))
    if g.get("--moe-router-enable-expert-bias"):
        if g.get("--moe-router-score-function", "softmax") != "sigmoid":
            raise ArchitectureError("--moe-router-enable-expert-bias needs --moe-router-score-function sigmoid "
                                    "(as Megatron requires); MindSpeed's expert bias on a softmax router "
                                    "(softmax_topk) has no Hugging Face family (MiniMax-M2's router is sigmoid)")
        out["moe_router_bias_update_rate"] = float(g.get("--moe-router-bias-update-rate", 1e-3))
    return out


GROUP_BALANCE_FLAGS = {"--moe-device-level-aux-loss-coeff": "moe_device_level_aux_loss_coeff",
                       "--moe-comm-aux-loss-coeff": "moe_comm_aux_loss_coeff"}


def group_balance_fields(g) -> Dict[str, Any]:
    """DeepSeek-V2's device- and communication-level balance losses (MindSpeed's group_limited_greedy router only;
    per sample with --seq-aux)."""
    out = {field: float(g[flag]) for flag, field in GROUP_BALANCE_FLAGS.items() if g.get(flag)}
    if not out:
        return out
    if not balancing(g).group_limited:
        flag = next(f for f in GROUP_BALANCE_FLAGS if g.get(f))
        raise ArchitectureError(f"{flag} balances the expert groups of MindSpeed's DeepSeek-V2 router: it needs "
                                "--moe-router-load-balancing-type group_limited_greedy with --topk-group")
    if g.get("--seq-aux"):
        out["moe_balance_per_sample"] = True
    return out


def moe_layer_pattern(text, layers: int) -> List[int]:
    """Megatron's --moe-layer-freq: an integer N (every N-th layer has experts) or a list such as [0]*3+[1]*58."""
    text = str(text).strip()
    if "[" not in text:  # Megatron's moe_freq_type evaluates any text holding a list, "([1]*48)" too
        try:
            freq = int(text)
        except ValueError:
            raise ArchitectureError(f"--moe-layer-freq {text}: expects an integer or a list such as "
                                    "[0]*3+[1]*58") from None
        # MindSpeed writes -1 or 0 for "every layer"
        return [1 if freq <= 1 or i % freq == 0 else 0 for i in range(layers)]
    try:
        pattern = eval_layer_list(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError):
        raise ArchitectureError(f"--moe-layer-freq {text}: expects a list of 0/1 such as [0]*3+[1]*58") from None
    if len(pattern) != layers or any(v not in (0, 1) for v in pattern):
        raise ArchitectureError(f"--moe-layer-freq {text}: needs one 0 or 1 per layer ({layers} layers), got "
                                f"{len(pattern)} entries")
    return pattern


def eval_layer_list(node) -> List[int]:
    """[ints], list * int and list + list: what Megatron's moe_freq_type evaluates, without eval (an ast node)."""
    if isinstance(node, ast.List) and all(isinstance(e, ast.Constant) and isinstance(e.value, int) for e in node.elts):
        return [e.value for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        if isinstance(node.right, ast.Constant) and isinstance(node.right.value, int):
            return eval_layer_list(node.left) * node.right.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return eval_layer_list(node.left) + eval_layer_list(node.right)
    raise ValueError(ast.dump(node))


def dense_layers(g, layers: int) -> List[int]:
    """Layers without experts: the first --first-k-dense-replace, and those --moe-layer-freq marks 0."""
    first_k = int(g.get("--first-k-dense-replace") or 0)
    pattern = moe_layer_pattern(g.get("--moe-layer-freq", 1), layers)
    first_k = min(max(first_k, 0), layers)  # more than every layer is every layer; never list a huge count
    return sorted(set(range(first_k)) | {i for i, v in enumerate(pattern) if not v})


def read_routing(g, layers: int, dense_ffn: int) -> Optional[Routing]:
    """The router, experts and shared experts the flags describe (None without --num-experts); the experts are as
    wide as the dense MLP unless --moe-ffn-hidden-size says otherwise, as in Megatron."""
    experts = g.get("--num-experts")
    if not experts:
        return None
    score = g.get("--moe-router-score-function", "softmax")
    if score not in ("softmax", "sigmoid"):
        raise ArchitectureError(f"--moe-router-score-function {score}: only softmax and sigmoid routers have a Hugging "
                                "Face family here")
    b = balancing(g)
    topk = g.get("--moe-router-topk", 2)
    pre_softmax = b.pre_softmax or bool(g.get("--moe-router-pre-softmax"))
    renorm_after = b.renorm_after or (b.group_limited and bool(g.get("--norm-topk-prob")))
    renorm = topk > 1 if score == "sigmoid" else (not pre_softmax or renorm_after)
    ffn = _first(g, "--moe-ffn-hidden-size", "--moe-intermediate-size", default=dense_ffn)
    group_topk = _first(g, "--moe-router-group-topk", "--topk-group")
    groups = _first(g, "--moe-router-num-groups", "--n-group") if group_topk else 1
    if b.group_limited and group_topk and groups is None:  # MindSpeed: one group per expert-parallel rank
        groups = g.get("--expert-model-parallel-size") or 1
    if b.group_limited:
        _check_group_limited(g, score, groups, group_topk, b)
    scaling = float(_first(g, "--moe-router-topk-scaling-factor", "--routed-scaling-factor", default=1.0))
    if b.unscaled and scaling != 1.0:
        raise ArchitectureError(f"--moe-router-load-balancing-type pai_megatron_aux_loss with a top-k scaling factor "
                                f"{scaling}: MindSpeed's pai_megatron_aux_loss router never scales the weights; drop "
                                "--moe-router-topk-scaling-factor / --routed-scaling-factor")
    shared = g.get("--moe-shared-expert-intermediate-size")
    if shared is None and g.get("--n-shared-experts"):
        shared = g["--n-shared-experts"] * ffn
    _check_sizes(ffn, shared, groups, group_topk)
    return Routing(experts=experts, topk=topk, ffn=ffn, score=score, renorm=renorm, groups=int(groups or 1),
                   group_topk=int(group_topk or 1),
                   scaling=scaling,
                   expert_bias=bool(g.get("--moe-router-enable-expert-bias")), aux=b.aux, shared_ffn=int(shared or 0),
                   shared_gate=bool(g.get("--moe-shared-expert-gate") or g.get("--shared-expert-gate")),
                   dense_layers=dense_layers(g, layers), group_limited=b.group_limited)


def _check_group_limited(g, score, groups, group_topk, b: Balancing) -> None:
    """MindSpeed's group_limited_greedy: softmax scores, a group count (its own or the expert-parallel size) and a
    group top-k. Its balance losses count the experts it chose, as the engine's do for this router."""
    if score != "softmax":
        raise ArchitectureError(f"--moe-router-load-balancing-type group_limited_greedy with "
                                f"--moe-router-score-function {score}: MindSpeed's DeepSeek-V2 router scores with "
                                "softmax; drop --moe-router-score-function")
    if group_topk is None:
        raise ArchitectureError("--moe-router-load-balancing-type group_limited_greedy needs --topk-group "
                                "(--moe-router-group-topk): how many expert groups a token may reach")
    if group_topk > groups:
        raise ArchitectureError(f"--topk-group {group_topk} with {groups} expert groups (--n-group, else MindSpeed's "
                                "one group per expert-parallel rank, --expert-model-parallel-size): a token cannot "
                                "reach more groups than there are")


def _check_sizes(ffn, shared, groups, group_topk) -> None:
    """Sizes the family fields are derived from (others are the architecture rules'): nonsense named here."""
    if not isinstance(ffn, int) or ffn < 1:
        raise ArchitectureError(f"--moe-ffn-hidden-size {ffn}: the experts' width must be a positive integer")
    if shared is not None and (not isinstance(shared, int) or shared < 0):
        raise ArchitectureError(f"shared experts of width {shared} (--moe-shared-expert-intermediate-size, or "
                                "--n-shared-experts × the expert width): give a positive integer, or 0 for none")
    for flag, value in (("--moe-router-num-groups", groups), ("--moe-router-group-topk", group_topk)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ArchitectureError(f"{flag} {value}: give a positive integer")


def moe_family(r: Routing, mla: bool, qk_norm: bool) -> str:
    """The transformers family whose router and experts compute what the flags describe."""
    sigmoid_only = [name for name, on in (
        ("--moe-router-enable-expert-bias", r.expert_bias),
        ("expert groups (--moe-router-num-groups/--moe-router-group-topk)", r.groups > 1),
        ("--moe-router-topk-scaling-factor", r.scaling != 1.0)) if on]
    if r.score == "sigmoid":
        if r.shared_gate:
            raise ArchitectureError("--moe-shared-expert-gate with a sigmoid router: the DeepSeek-V3 / GLM-4.5 "
                                    "families add their shared experts ungated; drop the gate")
        return "deepseek_v3" if mla else "glm4_moe"
    if mla:
        return _deepseek_v2(r)
    if r.group_limited:
        raise ArchitectureError("--moe-router-load-balancing-type group_limited_greedy without Multi-Latent Attention: "
                                "it is DeepSeek-V2's router, whose family (deepseek_v2) has MLA; add "
                                "--multi-latent-attention")
    if sigmoid_only:
        raise ArchitectureError(f"{', '.join(sigmoid_only)} with the softmax router: the families that group, scale or "
                                "bias their routing score with sigmoid (DeepSeek-V3, GLM-4.5, MiniMax-M2) or have "
                                "Multi-Latent Attention (DeepSeek-V2); add --moe-router-score-function sigmoid")
    if r.shared_ffn:
        if not r.shared_gate:
            raise ArchitectureError("shared experts without --moe-shared-expert-gate under a softmax router "
                                    "(DeepSeek-MoE v1) have no Hugging Face family here; Qwen2-MoE gates its shared "
                                    "expert (--moe-shared-expert-gate), DeepSeek-V3 / GLM-4.5 route with sigmoid")
        if qk_norm:
            raise ArchitectureError("--qk-layernorm with a gated shared expert: Qwen2-MoE, the family with one, has no "
                                    "q/k norms; drop --qk-layernorm")
        return "qwen2_moe"
    if r.shared_gate:
        raise ArchitectureError("--moe-shared-expert-gate without shared experts: add "
                                "--moe-shared-expert-intermediate-size")
    if qk_norm:
        return "qwen3_moe"
    if not r.renorm:
        raise ArchitectureError("--moe-router-pre-softmax (weights not renormalised) without --qk-layernorm: Mixtral "
                                "always renormalises the top-k weights; Qwen3-MoE (--qk-layernorm) does not have to")
    return "mixtral"


def _deepseek_v2(r: Routing) -> str:
    """A softmax router with MLA: transformers' DeepSeek-V2, when its router computes what the flags ask."""
    if r.expert_bias:
        raise ArchitectureError("--moe-router-enable-expert-bias with a softmax router and MLA: DeepSeek-V2's router "
                                "has no expert bias (DeepSeek-V3's sigmoid router has); add "
                                "--moe-router-score-function sigmoid or drop the expert bias")
    if r.shared_gate:
        raise ArchitectureError("--moe-shared-expert-gate with MLA: DeepSeek-V2 adds its shared experts ungated; drop "
                                "the gate")
    if r.renorm:
        raise ArchitectureError("a softmax router with MLA whose top-k weights are renormalised (Megatron's default "
                                "softmax after top-k, or --norm-topk-prob): transformers' DeepSeek-V2 takes the "
                                "softmax over all experts without renormalising; add --moe-router-pre-softmax (and "
                                "drop --norm-topk-prob), as DeepSeek-V2 routes")
    if _restricting(r) and not r.group_limited and r.topk // r.group_topk != 1:
        raise ArchitectureError(f"expert groups with a softmax router: top {r.topk} from {r.group_topk} groups; "
                                "transformers' DeepSeek-V2 ranks a group by its best score, megatron-core by the sum "
                                f"of its top {r.topk} / {r.group_topk} scores: they agree when --moe-router-topk / "
                                "--moe-router-group-topk is 1 (MindSpeed's group_limited_greedy ranks by the best "
                                "score whatever k is)")
    if r.groups > 1 and (r.experts % r.groups or r.group_topk > r.groups):
        raise ArchitectureError(f"expert groups: {r.experts} experts in {r.groups} groups, the best {r.group_topk} "
                                "kept; the groups must divide the experts and be at least --moe-router-group-topk")
    return "deepseek_v2"


def _restricting(r: Routing) -> bool:
    """Expert groups that limit the choice (keeping every group is plain top-k)."""
    return 1 < r.groups and r.group_topk < r.groups


def moe_fields(r: Routing, family: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"num_experts_per_tok": r.topk, "router_aux_loss_coef": r.aux,
                           "output_router_logits": r.aux > 0}
    if family in ("gpt_oss", "minimax_m2"):  # experts' width intermediate_size, every layer (check_gpt_oss/_minimax)
        return {**out, "num_local_experts": r.experts, "intermediate_size": r.ffn}
    if family == "mixtral":
        if r.dense_layers:
            raise ArchitectureError("Mixtral has experts in every layer; dense layers (--first-k-dense-replace / "
                                    "--moe-layer-freq) need the Qwen3-MoE family (add --qk-layernorm)")
        # Mixtral's experts use intermediate_size
        return {**out, "num_local_experts": r.experts, "intermediate_size": r.ffn}
    if family in ("qwen3_moe", "qwen2_moe"):
        out.update({"num_local_experts" if family == "qwen3_moe" else "num_experts": r.experts,
                    "moe_intermediate_size": r.ffn, "norm_topk_prob": r.renorm, "decoder_sparse_step": 1,
                    "mlp_only_layers": r.dense_layers})
        if family == "qwen2_moe":
            out["shared_expert_intermediate_size"] = r.shared_ffn
        return out
    fields = _sigmoid_fields(r)
    if family == "deepseek_v2":  # transformers' DeepSeek-V2 router: softmax, never renormalised
        grouped = _restricting(r)
        fields.update(norm_topk_prob=False, topk_method="group_limited_greedy" if grouped else "greedy",
                      n_group=r.groups if grouped else None, topk_group=r.group_topk if grouped else None)
    return {**out, **fields}


def _sigmoid_fields(r: Routing) -> Dict[str, Any]:
    """The DeepSeek-style fields (DeepSeek-V3, GLM-4.5 and, with its own router fields, DeepSeek-V2)."""
    if r.dense_layers != list(range(len(r.dense_layers))):
        raise ArchitectureError(f"dense layers {r.dense_layers}: the DeepSeek-V2 / V3 / GLM-4.5 families have their "
                                "dense layers first (first_k_dense_replace); use --first-k-dense-replace")
    if r.score == "sigmoid" and r.groups > 1 and (r.experts % r.groups or r.topk % r.group_topk
                                                  or r.topk // r.group_topk != 2):
        raise ArchitectureError(f"expert groups: {r.experts} experts in {r.groups} groups, top {r.topk} from "
                                f"{r.group_topk} groups; the DeepSeek-V3 / GLM-4.5 routers rank a group by its top "
                                "two scores, which is Megatron's rule when --moe-router-topk / --moe-router-group-topk "
                                "is 2 and the groups divide the experts")
    if r.shared_ffn % r.ffn:
        raise ArchitectureError(f"shared experts of width {r.shared_ffn}: the DeepSeek / GLM-4.5 families build "
                                f"them as n_shared_experts × the expert width {r.ffn}; give a multiple of it")
    return {"n_routed_experts": r.experts, "moe_intermediate_size": r.ffn, "n_shared_experts": r.shared_ffn // r.ffn,
            "routed_scaling_factor": r.scaling, "n_group": r.groups, "topk_group": r.group_topk,
            "norm_topk_prob": r.renorm, "first_k_dense_replace": len(r.dense_layers)}


# ---------------------------------------------------------------- back to flags

def moe_flags(arch: Dict[str, Any], family: str) -> List[str]:
    """Inverse of moe_fields (without the dense-layer flags, which the caller writes)."""
    experts = arch.get("num_local_experts", arch.get("num_experts", arch.get("n_routed_experts")))
    ffn = arch["intermediate_size"] if family in ("mixtral", "gpt_oss", "minimax_m2") else arch["moe_intermediate_size"]
    out = ["--num-experts", str(experts), "--moe-router-topk", str(arch["num_experts_per_tok"]),
           "--moe-ffn-hidden-size", str(ffn)]
    if family in ("qwen3_moe", "qwen2_moe", "deepseek_v2") and not arch.get("norm_topk_prob"):
        out.append("--moe-router-pre-softmax")
    if family == "deepseek_v2":
        out += _deepseek_v2_flags(arch, ffn)
    if family == "minimax_m2":  # the public Megatron recipe's spec with q/k norms over all heads (arch/minimax.py)
        out += ["--moe-router-score-function", "sigmoid", "--spec", "miles_plugins.models.minimax_m2",
                "get_minimax_m2_spec"]
    if family == "qwen2_moe":
        out += ["--moe-shared-expert-intermediate-size", str(arch["shared_expert_intermediate_size"]),
                "--moe-shared-expert-gate"]
    if family in SIGMOID_FAMILIES:
        out += ["--moe-router-score-function", "sigmoid"]
        if arch.get("n_shared_experts"):
            out += ["--moe-shared-expert-intermediate-size", str(arch["n_shared_experts"] * ffn)]
        if arch.get("n_group", 1) > 1:
            out += ["--moe-router-num-groups", str(arch["n_group"]), "--moe-router-group-topk", str(arch["topk_group"])]
        if arch.get("routed_scaling_factor", 1.0) != 1.0:
            out += ["--moe-router-topk-scaling-factor", str(arch["routed_scaling_factor"])]
    return out


def _deepseek_v2_flags(arch: Dict[str, Any], ffn: int) -> List[str]:
    """Shared experts, scaling and groups of the DeepSeek-V2 family: megatron-core's group flags where its rule
    (the sum of the top k / group-topk scores) is the family's (the best score), else MindSpeed's
    group_limited_greedy."""
    out = []
    if arch.get("n_shared_experts"):
        out += ["--moe-shared-expert-intermediate-size", str(arch["n_shared_experts"] * ffn)]
    if arch.get("routed_scaling_factor", 1.0) != 1.0:
        out += ["--moe-router-topk-scaling-factor", str(arch["routed_scaling_factor"])]
    if arch.get("topk_method") == "group_limited_greedy":
        groups = ["--moe-router-num-groups", str(arch["n_group"]), "--moe-router-group-topk", str(arch["topk_group"])]
        if arch["num_experts_per_tok"] // arch["topk_group"] != 1:
            groups = ["--moe-router-load-balancing-type", "group_limited_greedy"] + groups
        out += groups
    return out


def training_flags(values: Dict[str, Any], aux: float, sigmoid_written: bool) -> List[str]:
    """Inverse of balancing and training_fields: the load-balancing types with their coefficients (`aux` from the
    Hugging Face config), z-loss, expert bias (with the sigmoid router unless the architecture wrote it)."""
    coeffs = (("aux_loss", aux), ("seq_aux_loss", values.get("moe_seq_aux_loss_coeff")))
    kinds = [(kind, coeff) for kind, coeff in coeffs if coeff]
    out = []
    if kinds:
        out += ["--moe-router-load-balancing-type", *[k for k, _ in kinds], "--moe-aux-loss-coeff",
                *[str(c) for _, c in kinds]]
    if values.get("moe_z_loss_coeff"):
        out += ["--moe-z-loss-coeff", str(values["moe_z_loss_coeff"])]
    for flag, field_name in GROUP_BALANCE_FLAGS.items():
        if values.get(field_name):
            out += [flag, str(values[field_name])]
    if values.get("moe_balance_per_sample") and any(values.get(f) for f in GROUP_BALANCE_FLAGS.values()):
        out += ["--seq-aux"]
    if values.get("moe_router_bias_update_rate"):
        out += ([] if sigmoid_written else ["--moe-router-score-function", "sigmoid"])
        out += ["--moe-router-enable-expert-bias", "--moe-router-bias-update-rate",
                str(values["moe_router_bias_update_rate"])]
    return out
