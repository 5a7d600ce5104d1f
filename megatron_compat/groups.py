"""Mapped flags that only make sense together: precision, recompute, context parallel,
checkpoint paths, the architecture, and the batch and step arithmetic.

Each handler reads `t.given` (the Megatron flags as typed values) and writes canonical
values with `t.set`, adding one report line per flag it consumed.
"""
import json
import math
import os
from typing import Any, Dict

from fsdp2_core.config import FIELD_INDEX, ROUTER_FIELDS, ConfigError
from fsdp2_core.config.architecture_rules import MAX_LAYERS
from fsdp2_core.config.batch import data_parallel_size, gradient_accumulation_steps
from fsdp2_core.models.tp_layout import UNSPLIT

from . import pipeline_share
from .arch.module_names import renamed
from .architecture import (
    ENGINE_MODEL_ID,
    ArchitectureError,
    build_architecture,
    compare_with_checkpoint,
    engine_fields,
    uses_rope,
    wants_architecture,
)
from .mapping import ARCH_FLAGS
from .registry import rule_for
from .report import ReportLine
from .schedule_flags import decoupled_min_lr, derive_batch_schedule
from .weighted_split_flags import weighted_split


def _line(t, flag, text=None, status="mapped"):
    t.lines.append(ReportLine(flag, t.given[flag], status, text or rule_for(flag).target))


def precision(t):
    g = t.given
    if g.get("--bf16") and g.get("--fp16"):
        raise ConfigError("--bf16 and --fp16 exclude each other; keep one")
    for flag, dtype in (("--bf16", "bf16"), ("--fp16", "fp16")):
        if g.get(flag):
            t.set("param_dtype", dtype)
            _line(t, flag)


def main_grads_dtype(t):
    """--main-grads-dtype: the precision-aware optimizer's gradient buffer. bf16 accumulates and reduces gradients in
    bf16 (Megatron then drops its fp32 accumulation), which FSDP2 does with reduce_dtype bf16."""
    value = t.given.get("--main-grads-dtype")
    if value is None:
        return
    if value not in ("fp32", "bf16"):
        raise ConfigError(f"--main-grads-dtype {value}: expects fp32 or bf16 (Megatron's choices)")
    if value == "fp32":
        _line(t, "--main-grads-dtype", "the default: gradients reduced in fp32", status="absorbed")
        return
    if not t.given.get("--use-precision-aware-optimizer"):
        raise ConfigError(f"--main-grads-dtype {value} needs --use-precision-aware-optimizer (Megatron's optimizer "
                          "refuses it otherwise); add that flag, or drop --main-grads-dtype")
    t.set("reduce_dtype", "bf16")
    _line(t, "--main-grads-dtype", "parallel.reduce_dtype = bf16, as --grad-reduce-in-bf16 gives")


LOSS_SCALE_FLAGS = {"--loss-scale": "loss_scale", "--initial-loss-scale": "initial_loss_scale",
                    "--min-loss-scale": "min_loss_scale", "--loss-scale-window": "loss_scale_window",
                    "--hysteresis": "hysteresis"}


def loss_scale(t):
    """Megatron's loss-scaling flags. Under --deepspeed, Megatron-DeepSpeed hands DeepSpeed the bare optimizer
    (megatron/optimizer/__init__.py returns before its grad scaler): the flags do nothing there, and the DeepSpeed
    config's fp16 section is what scales (read by the deepspeed group)."""
    given = [f for f in LOSS_SCALE_FLAGS if t.given.get(f) is not None]
    for flag in given:
        if t.given.get("--deepspeed"):
            _line(t, flag, "ignored under --deepspeed, as Megatron-DeepSpeed ignores it: DeepSpeed's config (its "
                           "fp16 section) decides loss scaling", status="absorbed")
        else:
            t.set(LOSS_SCALE_FLAGS[flag], t.given[flag])
            _line(t, flag)


FP8_FLAGS = ("--fp8-format", "--fp8-recipe", "--fp8-amax-history-len", "--fp8-amax-compute-algo", "--fp8-param-gather",
             "--fp8-e4m3", "--fp8-hybrid")
# Megatron's spellings before --fp8-format (2023): switches naming the format
OLD_FP8_FORMATS = {"--fp8-e4m3": "e4m3", "--fp8-hybrid": "hybrid"}


BF16_ENDS_FLAGS = ("--first-last-layers-bf16", "--num-layers-at-start-in-bf16", "--num-layers-at-end-in-bf16")


def fp8(t):
    """Megatron's FP8 flags: float8 training (torchao) or, with --fp8-recipe mxfp8, the MXFP8 recipe.

    The hardware check (FP8 GPUs only) happens when the run starts, so --print-config shows the mapping anywhere."""
    g = t.given
    given = [f for f in FP8_FLAGS if f in g and g[f] is not None and g[f] is not False]
    fmt = _fp8_format(t)
    _bf16_ends(t, quantised=bool(fmt))
    if not given:
        return
    if not fmt:
        for flag in given:
            _line(t, flag, "no effect without --fp8-format (Megatron trains without FP8 then too)", status="absorbed")
        return
    recipe = g.get("--fp8-recipe") or "delayed"
    if recipe == "custom":
        t.reject("--fp8-recipe", "--fp8-recipe custom loads a Transformer Engine quantizer factory, which has no "
                 "equivalent here", "--fp8-recipe tensorwise (torchao float8) or mxfp8")
        return
    if recipe == "mxfp8":
        t.set("quant_recipe", "mxfp8")
        t.set("quant_format", "E4M3")
        t.set("quant_block_size", 32)
        _line(t, _format_flag(t), "model.quant_recipe mxfp8, quant_format E4M3 (MX elements are E4M3 in Megatron's "
                                  "mxfp8 recipe, hybrid included)")
        _line(t, "--fp8-recipe", "model.quant_recipe mxfp8 (converters quantize.linear.mx)")
        for flag in given:
            if flag not in ("--fp8-format", "--fp8-recipe", *OLD_FP8_FORMATS):
                _line(t, flag, "not used by MXFP8 (block scales, weights all-gathered in their training dtype)",
                      status="absorbed")
        return
    t.set("fp8_format", fmt)
    t.set("fp8_recipe", recipe)
    flag = _format_flag(t)
    _line(t, flag, None if flag == "--fp8-format" else f"model.fp8_format {fmt} (Megatron's spelling before "
                                                        "--fp8-format)")
    if "--fp8-recipe" in given:
        _line(t, "--fp8-recipe")
    for flag, field_name in (("--fp8-amax-history-len", "fp8_amax_history_len"),
                             ("--fp8-amax-compute-algo", "fp8_amax_compute_algo"),
                             ("--fp8-param-gather", "fp8_param_gather")):
        if flag in given:
            t.set(field_name, g[flag])
            _line(t, flag)


def _fp8_format(t):
    """--fp8-format, or the old switch that names it (both given must agree)."""
    g = t.given
    named = {fmt for flag, fmt in OLD_FP8_FORMATS.items() if g.get(flag)}
    if g.get("--fp8-format"):
        named.add(g["--fp8-format"])
    if len(named) > 1:
        raise ConfigError(f"FP8 formats {', '.join(sorted(named))} both given (--fp8-format / --fp8-e4m3 / "
                          "--fp8-hybrid); keep one")
    return named.pop() if named else None


def _format_flag(t) -> str:
    return "--fp8-format" if t.given.get("--fp8-format") else next(f for f in OLD_FP8_FORMATS if t.given.get(f))


def _bf16_ends(t, quantised: bool) -> None:
    """--first-last-layers-bf16: Megatron builds the first N and last M decoder layers (N, M from
    --num-layers-at-start/end-in-bf16, default 1) without FP8; here they join the modules never quantised."""
    g = t.given
    given = [f for f in BF16_ENDS_FLAGS if f in g and g[f] is not None and g[f] is not False]
    if not given:
        return
    if not quantised or not g.get("--first-last-layers-bf16"):
        why = ("no effect without --fp8-format (every layer trains in bf16 then)" if not quantised else
               "no effect without --first-last-layers-bf16 (as in Megatron)")
        for flag in given:
            _line(t, flag, why, status="absorbed")
        return
    layers, start = g.get("--num-layers"), g.get("--num-layers-at-start-in-bf16", 1)
    end = g.get("--num-layers-at-end-in-bf16", 1)
    if not layers:
        t.reject("--first-last-layers-bf16", "the last layers are counted from --num-layers, which is not given",
                 "give --num-layers, or list the layers in quant_ignored_modules (model.layers.<i>)")
        return
    if start < 0 or end < 0 or start + end > layers:
        raise ConfigError(f"--num-layers-at-start-in-bf16 {start} and --num-layers-at-end-in-bf16 {end}: each >= 0 "
                          f"and together at most --num-layers {layers}")
    kept = [f"model.layers.{i}" for i in list(range(start)) + list(range(layers - end, layers))]
    t.set("quant_ignored_modules", ["lm_head"] + kept)
    for flag in given:
        _line(t, flag, f"model.quant_ignored_modules += {', '.join(kept) or 'nothing'} (decoder layers kept in "
                       "bf16: the first N and last M)")


# Megatron's adam (decoupled weight decay), and Habana's adamw (torch AdamW) and fusedadamw (its fused AdamW)
ADAMW_SPELLINGS = ("adam", "adamw", "fusedadamw")


def optimizer(t):
    if "--optimizer" not in t.given:
        return
    if t.given["--optimizer"] in ADAMW_SPELLINGS:
        t.set("optimizer", "adamw")
        _line(t, "--optimizer")
    elif t.given["--optimizer"] == "sgd":
        t.set("optimizer", "sgd")
        _line(t, "--optimizer", "training.optimizer = sgd (torch SGD with --sgd-momentum and weight decay, as "
                                "Megatron builds it)")
    else:
        t.reject("--optimizer", f"optimizer {t.given['--optimizer']} is not available; the engine trains with AdamW "
                                "or SGD", "--optimizer adam")


def stage(t):
    if "--stage" not in t.given:
        return
    if t.given["--stage"] == "sft":
        t.set("stage", "sft")
        _line(t, "--stage")
    else:
        t.reject("--stage", f"stage {t.given['--stage']} (preference / reinforcement-learning training) is not "
                            "supported; the engine trains supervised fine-tuning (--stage sft) and pretraining only",
                 "train with MindSpeed-LLM for DPO/PPO/GRPO, or use --stage sft")


def instruction(t):
    """--is-instruction-dataset, --prompt-type, --enable-thinking: MindSpeed-LLM instruction data."""
    g = t.given
    if g.get("--is-instruction-dataset"):
        t.set("is_instruction_dataset", True)
        t.set("stage", "sft")
        _line(t, "--is-instruction-dataset")
    if "--prompt-type" in g:
        from fsdp2_core.data.mindspeed.instruction import PROMPT_TYPES
        name = g["--prompt-type"]
        t.set("template", PROMPT_TYPES.get(name, name))
        _line(t, "--prompt-type", f"data.template = {PROMPT_TYPES.get(name, name)}")
        if name not in PROMPT_TYPES:
            t.notes.append(f"--prompt-type {name}: no built-in template renders as MindSpeed-LLM's {name}; instruction "
                           "data already preprocessed by MindSpeed-LLM trains without it, but tools/preprocess_data.py "
                           f"and raw fine-tuning data need one of {', '.join(sorted(PROMPT_TYPES))}")
    if "--tokenizer-padding-side" in g:
        _padding_side(t, g["--tokenizer-padding-side"], bool(g.get("--is-instruction-dataset")), uses_rope(g))
    if "--enable-thinking" in g:
        value = str(g["--enable-thinking"]).lower()
        choices = {"true": True, "false": False, "none": None}
        if value not in choices:
            raise ConfigError(f"--enable-thinking {g['--enable-thinking']}: expects true, false or none")
        t.set("enable_thinking", choices[value])
        _line(t, "--enable-thinking")


def _padding_side(t, side, instruction_data, rope):
    """MindSpeed pads instruction batches on the tokenizer's side; pretraining samples are never padded. Left padding
    numbers the positions over the padded row (its get_batch passes no position ids) and masks the padding, which a
    rotary model computes as right padding (attention sees only distances); a learned-position model would not."""
    if side not in ("left", "right"):
        raise ConfigError(f"--tokenizer-padding-side {side}: expects left or right")
    if side == "left" and instruction_data and not rope:
        raise ConfigError("--tokenizer-padding-side left with --is-instruction-dataset and learned positions: left "
                          "padding moves each sample's positions by its padding, which changes a learned-position "
                          "model, and the engine pads on the right; drop the flag or give right")



_LORA_FLAGS = ("--lora-target-modules", "--lora-r", "--lora-alpha", "--lora-dropout")


def lora(t):
    """MindSpeed-LLM turns LoRA on with --lora-target-modules (rank 16 and alpha 32 unless given)."""
    g = t.given
    given = [f for f in _LORA_FLAGS if f in g]
    if not given:
        return
    targets = g.get("--lora-target-modules") or []
    if not targets:
        for flag in given:
            _line(t, flag, "no effect: without --lora-target-modules MindSpeed-LLM trains every parameter, as the "
                           "engine does")
        return
    from fsdp2_core.models.lora import hf_target_modules
    hf = hf_target_modules(list(targets))
    if g.get("--tensor-model-parallel-size", 1) > 1 and g.get("--lora-dropout", 0.0) > 0:
        raise ConfigError(f"--lora-dropout {g['--lora-dropout']} with --tensor-model-parallel-size "
                          f"{g['--tensor-model-parallel-size']}: each tensor-parallel rank would draw its own dropout "
                          "masks on the adapters' input, which those ranks must see alike; drop --lora-dropout "
                          "(MindSpeed-LLM's default is 0) or set --tensor-model-parallel-size 1")
    r, alpha = g.get("--lora-r", 16), g.get("--lora-alpha", 32)
    if r < 1:
        raise ConfigError(f"--lora-r {r}: the LoRA rank must be at least 1")
    t.set("lora_target_modules", list(targets))
    t.set("lora_r", int(r))
    t.set("lora_alpha", float(alpha))
    t.set("lora_dropout", float(g.get("--lora-dropout", 0.0)))
    _line(t, "--lora-target-modules", f"model.lora_target_modules → {', '.join(hf)} (peft LoRA; only adapters train)")
    for flag in given[1:]:
        _line(t, flag)
    if "--lora-r" not in g:
        t.notes.append("LoRA rank 16 and alpha 32: MindSpeed-LLM's defaults, as --lora-r/--lora-alpha are not given")


def dataloader(t):
    kind = t.given.get("--dataloader-type")
    if kind is None:
        return
    if kind in ("single", "cyclic"):
        t.set("dataloader_type", kind)
        _line(t, "--dataloader-type")
    else:
        t.reject("--dataloader-type", f"the {kind} data loader (the user's own, Megatron's `external`) is not "
                                      "available; Megatron's single and cyclic samplers are",
                 "--dataloader-type single or cyclic")


def tokenizer(t):
    if "--tokenizer-model" not in t.given:
        return
    path = t.given["--tokenizer-model"]
    t.set("tokenizer_model", path)
    if (t.given.get("--tokenizer-type") in ("HuggingFaceTokenizer", "PretrainedFromHF")
            and "--tokenizer-name-or-path" not in t.given):
        t.set("tokenizer_name_or_path", path)
    _line(t, "--tokenizer-model")


_SELECTIVE_MODULES = {
    "core_attn": ["model.layers.{*}.self_attn"], "mla_up_proj": ["model.layers.{*}.self_attn"],
    "mlp": ["model.layers.{*}.mlp"], "moe": ["model.layers.{*}.mlp"], "moe_act": ["model.layers.{*}.mlp"],
    "shared_experts": ["model.layers.{*}.mlp"],
    "layernorm": ["model.layers.{*}.input_layernorm", "model.layers.{*}.post_attention_layernorm"],
}


def recompute(t):
    g = t.given
    flags = [f for f in ("--recompute-granularity", "--recompute-method", "--recompute-num-layers",
                         "--recompute-activations", "--recompute-modules", "--checkpoint-activations") if f in g]
    if not flags:
        return
    granularity = g.get("--recompute-granularity") or ("selective" if g.get("--recompute-activations") else None)
    if g.get("--checkpoint-activations"):  # the old spelling of full recompute (chunks of --checkpoint-num-layers)
        if granularity not in (None, "full"):
            raise ConfigError(f"--checkpoint-activations (full recompute) and --recompute-granularity {granularity} "
                              "exclude each other; keep one")
        granularity = "full"
    if granularity == "full":
        t.set("recompute", True)
        t.set("recompute_modules", _full_recompute_layers(g))
    elif granularity == "selective":
        names = g.get("--recompute-modules") or ["core_attn"]
        unknown = [n for n in names if n not in _SELECTIVE_MODULES]
        if unknown:
            raise ConfigError(f"--recompute-modules {' '.join(unknown)}: unknown; choose from "
                              f"{', '.join(_SELECTIVE_MODULES)}")
        modules = []
        for n in names:
            modules += [m for m in _SELECTIVE_MODULES[n] if m not in modules]
        t.set("recompute", True)
        t.set("recompute_modules", modules)
    else:
        t.notes.append("--recompute-method/--recompute-num-layers without --recompute-granularity: Megatron recomputes "
                       "nothing, nor do we")
    for flag in flags:
        _line(t, flag)


def _full_recompute_layers(g):
    """Megatron's full recompute: uniform covers every layer; block the first N layers of each pipeline stage."""
    if g.get("--recompute-method") != "block":
        return ["model.layers.{*}"]
    layers = g.get("--num-layers")
    n = g.get("--recompute-num-layers") or 1
    stages = max(g.get("--pipeline-model-parallel-size", 1), 1)  # below 1 is refused by pipeline()
    if not layers or layers < 1:
        raise ConfigError("--recompute-method block needs --num-layers to know which layers it covers")
    if layers > MAX_LAYERS:
        return ["model.layers.{*}"]  # refused by the architecture's rules; never list that many layers
    per_stage = max(layers // stages, 1)
    chosen = [i for i in range(layers) if i % per_stage < n]
    if len(chosen) == layers:
        return ["model.layers.{*}"]
    return [f"model.layers.{i}" for i in chosen]


RING_ALGOS = ("megatron_cp_algo", "hybrid_cp_algo", "kvallgather_cp_algo", "hybrid_adaptive_cp_algo",
              "adaptive_cp_algo")


def _sequence_parallel_note(t):
    """Megatron runs tensor parallelism without sequence parallelism unless told; we run it with, and say so."""
    if (t.given.get("--tensor-model-parallel-size") or 1) > 1 and not t.given.get("--sequence-parallel") \
            and not _mtp_depth(t.given):
        t.notes.append("tensor parallelism runs with sequence parallelism (what --sequence-parallel asks for, and "
                       "Megatron recommends): norm and residual activations split over the sequence, same loss; set "
                       "parallel.sequence_parallel false to keep them whole on every tensor-parallel rank")


def context_and_experts(t):
    g = t.given
    _sequence_parallel_note(t)
    cp = g.get("--context-parallel-size", 1)
    algo = g.get("--context-parallel-algo")
    if algo is not None and cp >= 1:  # a size below 1 is refused with parallel.cp_size
        if cp == 1 or algo == "ulysses_cp_algo":
            t.set("cp_type", "ulysses")
            _line(t, "--context-parallel-algo", "parallel.cp_type "
                                                "= ulysses" + (" (cp size 1: no effect)" if cp == 1 else ""))
        elif algo in RING_ALGOS:
            heads = g.get("--num-attention-heads")
            if heads is not None and heads % cp == 0:
                t.set("cp_type", "ulysses")
                _line(t, "--context-parallel-algo", f"parallel.cp_type = ulysses: {algo} is ring-style; the {heads} "
                                                    f"heads divide by cp {cp}, so Ulysses gives the same result")
            else:
                t.reject("--context-parallel-algo", f"{algo} with cp {cp}: only Ulysses context parallelism exists "
                                                    f"here, and it needs the attention heads ({heads}) to divide by "
                                                    "cp", "a --context-parallel-size that divides "
                                                          "--num-attention-heads")
        else:
            t.reject("--context-parallel-algo", f"{algo} "
                                                "has no equivalent here", "--context-parallel-algo ulysses_cp_algo")
    etp = g.get("--expert-tensor-parallel-size")
    if "--expert-tensor-parallel-size" in g:
        if etp in (None, 1):
            _line(t, "--expert-tensor-parallel-size", "experts are not tensor-split here, which is what 1 asks for")
        else:
            t.reject("--expert-tensor-parallel-size", f"expert tensor parallelism ({etp}) is not available; experts "
                                                      "shard with ep_size and ep_fsdp_size",
                     "--expert-tensor-parallel-size 1 with ep_fsdp_size")


def load_paths(t):
    """--load (a checkpoint to resume, or a model to start from) and --finetune (load its weights only)."""
    g = t.given
    load, save = g.get("--load"), g.get("--save")
    if g.get("--finetune") and (load is not None or g.get("--pretrained-checkpoint")):
        t.set("finetune", True)
        _line(t, "--finetune", "training.finetune")
    if load is None:
        if g.get("--finetune") and not g.get("--pretrained-checkpoint"):  # Megatron loads nothing: from scratch
            _line(t, "--finetune", "training.finetune stays false: without --load there is nothing to fine-tune")
            t.notes.append("WARNING: --finetune without --load: Megatron has no checkpoint to load and trains from "
                           "scratch, and so does this run; give --load (a Megatron checkpoint or a Hugging Face "
                           "model) to fine-tune")
        return
    if save is not None and os.path.normpath(load) == os.path.normpath(save):
        t.set("resume_from_checkpoint", "latest")
        _line(t, "--load", "training.resume_from_checkpoint = latest (--load equals --save: resume from the newest "
                           "checkpoint there)")
        return
    t.set("model_name_or_path", load)
    _line(t, "--load", "model.model_name_or_path (a Megatron-LM checkpoint to continue, or a Hugging Face model "
                       "directory; checked at run time)")


def architecture(t):
    """Architecture flags -> model.architecture (a Hugging Face config), and the engine's own settings for it
    (router losses, expert bias, MTP, model_id). With --load of a Hugging Face directory its config.json is the
    model: the flags are compared with it, and a combination no family here builds is reported, not refused."""
    g = t.given
    consumed = [f for f in ARCH_FLAGS if f in g]
    if not consumed:
        experts_of_checkpoint(t)
        return
    load = t.values.get("model_name_or_path")
    path, checkpoint = _checkpoint_config(load) if load else (None, None)
    if not wants_architecture(g):
        t.notes.append(f"{', '.join(consumed)} given without --num-layers/--hidden-size/--num-attention-heads: "
                       "the architecture comes from the checkpoint, so these flags are only compared with it")
    else:
        try:
            arch, notes = build_architecture(g, g.get("--seq-length"), g.get("--tensor-model-parallel-size", 1))
        except ArchitectureError as exc:
            if checkpoint is None:
                raise
            t.notes.append(f"{path} defines the model, and is what gets loaded; the architecture flags could not be "
                           f"compared with it: {exc}")
        else:
            t.set("architecture", arch)
            for name, value in renamed(arch["model_type"], t.values).items():
                t.set(name, value)
            t.notes.extend(notes)
            if load is None:
                t.set("train_from_scratch", True)
            elif checkpoint is not None:
                _note_differences(t, arch, path, checkpoint)
            _engine_model_id(t, arch["model_type"], "the architecture flags")
            _fold_model_parallel(t, arch["model_type"])
    for name, value in engine_fields(g).items():
        t.set(name, value)
    _mtp_without_sequence_parallel(t)
    experts_of_checkpoint(t)
    for flag in consumed:
        _line(t, flag)


def _mtp_depth(g) -> int:
    return int(g.get("--mtp-num-layers") or g.get("--num-nextn-predict-layers") or 0)


def _fold_model_parallel(t, family):
    """Tensor- and context-parallel ranks of a family whose attention neither splits fold into data parallelism, as
    pipeline ranks do: the model and the global batch are the same, only the layout differs."""
    if family not in UNSPLIT:  # families whose attention the engine splits neither by heads nor by sequence
        return
    folded = []
    for field_name in ("tp_size", "cp_size"):
        size = t.values.get(field_name) or 1
        if size > 1:
            t.set(field_name, 1)
            t.folded *= size
            folded.append(f"{field_name.replace('_size', '')} {size}")
    if not folded:
        return
    t.set("sequence_parallel", False)
    t.notes.append(f"{' and '.join(folded)} folded into FSDP sharding: {UNSPLIT[family][0]} (split "
                   "neither by heads nor by sequence here), so those ranks become data-parallel ranks (FSDP shards the "
                   "weights over them); the model and the global batch are the script's, the accumulation steps follow "
                   "from the larger data-parallel size")


def _mtp_without_sequence_parallel(t):
    """MTP layers take the whole sequence: with tensor parallelism they run without sequence parallelism, which
    changes no result (only activation memory)."""
    if _mtp_depth(t.given) and (t.given.get("--tensor-model-parallel-size") or 1) > 1:
        t.set("sequence_parallel", False)
        t.notes.append("--mtp-num-layers with tensor parallelism: sequence parallelism is off (the MTP layers take "
                       "the whole sequence); the same loss, norm and residual activations whole on every rank")


def _checkpoint_config(load):
    path = os.path.join(load, "config.json")
    if not os.path.isfile(path):
        return path, None
    with open(path, encoding="utf-8") as fh:
        return path, json.load(fh)


def _note_differences(t, arch, path, checkpoint):
    diffs = compare_with_checkpoint(arch, checkpoint)
    if diffs:
        t.notes.append(f"the architecture flags disagree with {path}: " + "; ".join(diffs)
                       + " (the checkpoint's config.json is what gets loaded)")


def _engine_model_id(t, model_type, source):
    """MoE families run the engine's MoE forward (model_id), which expert parallelism needs: set it."""
    model_id = ENGINE_MODEL_ID.get(model_type)
    if model_id is None or "model_id" in t.values:
        return
    t.set("model_id", model_id)
    t.notes.append(f"model.model_id = {model_id}: {source} describe a {model_type} model, whose MoE layers run the "
                   "engine's routing and token dispatch (Megatron's router losses and expert bias; expert parallelism "
                   "needs it)")


ENGINE_FIELDS = ROUTER_FIELDS + ("moe_balance_per_sample",)


def experts_of_checkpoint(t):
    """--expert-model-parallel-size, or router settings of the engine's MoE forward, with a --load checkpoint and no
    architecture flags: its config.json names the family."""
    load = t.values.get("model_name_or_path")
    wanted = t.given.get("--expert-model-parallel-size", 1) > 1 or any(t.values.get(f) for f in ENGINE_FIELDS)
    if load is None or "architecture" in t.values or not wanted:
        return
    path, hf = _checkpoint_config(load)
    if hf is not None:
        _engine_model_id(t, hf.get("model_type"), path)


def pipeline(t):
    pp = t.given.get("--pipeline-model-parallel-size")
    if pp is None:
        return
    if pp < 1:
        raise ConfigError(f"--pipeline-model-parallel-size {pp}: must be >= 1 (1 means no pipeline stages); "
                          "set it to the script's pipeline size or drop the flag")
    text = "no pipeline stages under FSDP2: " + (f"its {pp} pipeline ranks fold into FSDP sharding (dp = world / (tp × "
                                                 "cp)); global batch, samples and schedule "
                                                 "stay as the script says" if pp > 1 else "size 1, nothing to fold")
    _line(t, "--pipeline-model-parallel-size", text)
    if pp > 1:
        t.notes.append(f"pipeline parallelism {pp} folded into FSDP sharding: data-parallel size = world / (tp × cp); "
                       "the global batch and schedule are unchanged")


def save_parts(t):
    """--no-save-optim / --no-save-rng; both together save the model only, as Megatron then does."""
    for flag, field_name in (("--no-save-optim", "save_optim"), ("--no-save-rng", "save_rng")):
        if t.given.get(flag):
            t.set(field_name, False)
            _line(t, flag)
    if t.given.get("--no-save-optim") and t.given.get("--no-save-rng"):
        t.set("save_only_model", True)


def deepspeed(t):
    """--deepspeed with --deepspeed_config: the JSON's batch sizes, precision and gradient clipping become fields (a
    flag that says otherwise is named); --zero-stage and the JSON's ZeRO stage are reported, since FSDP2 shards
    parameters, gradients and optimizer state whatever the stage. Under DeepSpeed the optimizer is still Megatron's
    (the flags), but gradient clipping is DeepSpeed's alone: the JSON's gradient_clipping, none when it has none."""
    g = t.given
    if not any(f in g for f in ("--deepspeed", "--deepspeed_config", "--zero-stage")):
        return
    path, stage = g.get("--deepspeed_config"), g.get("--zero-stage")
    config = read_deepspeed_config(path, t.files) if path else None
    if path and config is None:
        _deepspeed_config_missing(t, path)
    elif path:
        read = [_from_deepspeed(t, name, value, key, path) for name, value, key in deepspeed_values(config)]
        json_stage = (config.get("zero_optimization") or {}).get("stage")
        if stage is not None and json_stage is not None and int(stage) != int(json_stage):
            t.notes.append(f"WARNING: --zero-stage {stage} and {path}'s zero_optimization.stage {json_stage} "
                           f"disagree; DeepSpeed trains with the config file's ({json_stage}), and FSDP2 shards as "
                           "ZeRO-3 does whichever it is: make them equal to keep the old script unambiguous")
        stage = json_stage if json_stage is not None else stage
        if config.get("optimizer"):
            t.notes.append(f"{path}: its optimizer section is not read; Megatron-DeepSpeed hands DeepSpeed the "
                           "optimizer its flags describe (--lr, --adam-beta1, ...), which is the one kept")
        _line(t, "--deepspeed_config", f"read {path}: " + "; ".join(read))
    elif g.get("--deepspeed"):
        t.notes.append("--deepspeed without --deepspeed_config: DeepSpeed would stop for want of its config; the "
                       "flags alone decide batch, precision and clipping")
    if g.get("--deepspeed"):
        _line(t, "--deepspeed")
    if stage is not None:
        text = (f"ZeRO stage {int(stage)}: FSDP2 shards parameters, gradients and optimizer state (ZeRO-3's layout) "
                "whatever the stage: the same training in less memory")
        if "--zero-stage" not in g:  # the flag's own line (absorbed) says the same
            t.notes.append(text)


# DeepSpeed config keys -> (canonical field, the flag that says the same)
DEEPSPEED_KEYS = {"train_micro_batch_size_per_gpu": ("per_device_train_batch_size", "--micro-batch-size"),
                  "train_batch_size": ("global_batch_size", "--global-batch-size"),
                  "gradient_clipping": ("max_grad_norm", "--clip-grad")}


def _deepspeed_config_missing(t, path):
    """The config is neither written by the script nor on disk (a script copied without its repository, or a file
    another step makes): the flags, which Megatron-DeepSpeed scripts fill the config's template from, decide; said
    loudly, since DeepSpeed would have clipped by the file's gradient_clipping alone."""
    clip = t.given.get("--clip-grad", "1.0 (Megatron's default)")
    precision = t.values.get("param_dtype") or "fp32"  # --bf16 / --fp16, as mapped; Megatron's default otherwise
    t.notes.append(f"WARNING: --deepspeed_config {path} is not here, and the script does not write it: the batch, "
                   f"precision ({precision}) and gradient clipping (--clip-grad {clip}) come from the Megatron flags. "
                   f"Under DeepSpeed the file decides clipping (none when it has no gradient_clipping) and must agree "
                   f"on batch and precision: put it there (paths are relative to the launch directory) and convert "
                   f"again to read it")
    _line(t, "--deepspeed_config", f"{path} not here: the flags decide batch, precision and clipping")


def read_deepspeed_config(path, files):
    """The JSON the script wrote (a here-document) or the file on disk; None when it is neither."""
    text = (files or {}).get(path)
    if text is None:
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--deepspeed_config {path}: not JSON ({exc.msg} at line {exc.lineno}; values the reader "
                          "could not evaluate, such as command substitutions, stay as text)") from None
    if not isinstance(config, dict):
        raise ConfigError(f"--deepspeed_config {path}: expects a JSON object")
    return config


def deepspeed_values(config):
    """(canonical field, value, config key) for what a DeepSpeed config decides."""
    out = [(DEEPSPEED_KEYS[key][0], config[key], key) for key in DEEPSPEED_KEYS
           if config.get(key) not in (None, "auto")]
    if config.get("gradient_clipping") is None:  # DeepSpeed's default: no clipping
        out.append(("max_grad_norm", 0.0, "gradient_clipping (absent: DeepSpeed does not clip)"))
    for section in ("bf16", "fp16"):
        if (config.get(section) or {}).get("enabled") in (True, "true"):
            out.append(("param_dtype", section, f"{section}.enabled"))
    fp16 = config.get("fp16") or {}
    if fp16.get("enabled") in (True, "true"):
        out += _deepspeed_loss_scale(fp16)
    return out


# DeepSpeed's fp16 section -> the loss-scale fields, with DeepSpeed's defaults (deepspeed/runtime/constants.py)
DEEPSPEED_LOSS_SCALE = (("loss_scale_window", "loss_scale_window", 1000), ("hysteresis", "hysteresis", 2),
                        ("min_loss_scale", "min_loss_scale", 1))


def _deepspeed_loss_scale(fp16):
    """fp16.loss_scale 0 (DeepSpeed's default) scales dynamically from 2**initial_scale_power; above 0 it is static."""
    static = float(fp16.get("loss_scale", 0) or 0)
    if static > 0:
        return [("loss_scale", static, "fp16.loss_scale")]
    power = int(fp16.get("initial_scale_power", 16))
    out = [("loss_scale", None, "fp16.loss_scale 0 (dynamic)"),
           ("initial_loss_scale", float(2 ** power), f"fp16.initial_scale_power {power}")]
    return out + [(name, fp16.get(key, default), f"fp16.{key}") for key, name, default in DEEPSPEED_LOSS_SCALE]


def _from_deepspeed(t, name, value, key, path) -> str:
    """Take a value from the DeepSpeed config; a flag that says otherwise is an error (gradient clipping: a note,
    since DeepSpeed's replaces Megatron's)."""
    flag = next((f for n, f in DEEPSPEED_KEYS.values() if n == name), "--bf16 / --fp16")
    said = t.given.get(flag) if name in ("global_batch_size", "max_grad_norm") else t.values.get(name)
    if name == "max_grad_norm":
        if said is not None and float(said) != float(value):
            t.notes.append(f"{path}: DeepSpeed clips gradients by {key} ({value}), not by --clip-grad {said}")
    elif name == "global_batch_size" and said is not None and not _same_value(said, value):
        # Megatron-DeepSpeed's train loop hands DeepSpeed Megatron's batch before every iteration
        # (megatron/training.py: model[0].set_train_batch_size(dp × micro × micro-batches)): the flag wins.
        t.notes.append(f"{path}: {key} {value} is replaced by --global-batch-size {said}, as Megatron-DeepSpeed "
                       "sets DeepSpeed's batch from its own flags at every iteration")
        return f"{key} {value} (replaced by --global-batch-size {said})"
    elif said is not None and not _same_value(said, value):
        raise ConfigError(f"{path}: {key} is {value} but {flag} says {said}; make them agree (DeepSpeed refuses "
                          "a batch that disagrees, and casts the model to its config's precision)")
    t.set(name, value)
    return f"{key} → {name} = {value}"


def _same_value(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def derive_batch(t, values: Dict[str, Any], dialect: str) -> None:
    """gradient_accumulation_steps = global batch / (micro batch × dp), with dp = world / (tp × cp)."""
    gbs = t.given.get("--global-batch-size", values.get("global_batch_size"))
    mbs = values.get("per_device_train_batch_size")
    if dialect == "megatron" and mbs is None:
        raise ConfigError("add --micro-batch-size: Megatron needs the micro batch size per GPU")
    if mbs is None:  # FSDP2 names without per_device_train_batch_size: the reference default applies
        mbs = FIELD_INDEX["per_device_train_batch_size"][1].default
    if "--global-batch-size" in t.given:
        _line(t, "--global-batch-size")
        t.origin["global_batch_size"] = "--global-batch-size"
    sizes = (mbs, values.get("tp_size", 1), values.get("cp_size", 1), t.given.get("--pipeline-model-parallel-size", 1))
    if any(not isinstance(n, int) or n < 1 for n in sizes) or (gbs is not None and gbs < 1):
        if gbs is not None:
            values["global_batch_size"] = gbs
        return  # nothing to derive: the validation names the size below 1 and the flag that set it
    if t.world_size is None:
        if gbs is not None:
            values["global_batch_size"] = gbs
            t.notes.append("world size unknown here: gradient_accumulation_steps is derived at run time from global "
                           f"batch {gbs}")
        return
    dp = data_parallel_size(t.world_size, values.get("tp_size", 1), values.get("cp_size", 1))
    pp = t.given.get("--pipeline-model-parallel-size", 1)
    if gbs is None:
        if dialect != "megatron":
            return
        # Megatron's default global batch: its data-parallel size excludes pipeline ranks and the tp/cp ranks folded
        gbs = mbs * max(dp // (pp * t.folded), 1)
    unshared = []
    if pp > 1 and gbs % (mbs * dp):
        dp, unshared = _share_pipeline_ranks(t, values, gbs, mbs, dp, pp)
    if (pp > 1 or t.folded > 1) and gbs % (mbs * dp):
        mbs = _fit_micro_batch(t, values, gbs, mbs, dp, pp, t.folded)
    values["global_batch_size"] = gbs
    if pp > 1 and gbs % (mbs * dp):  # the folded ranks cannot share the batch: pipeline parallelism is what it needs
        too_few = f"is smaller than the data-parallel size {dp}" if gbs < dp else \
            f"is not a multiple of micro batch {mbs} × data-parallel size {dp}"
        why = f" Nor can they share samples as context or tensor parallel ranks: {'; '.join(unshared)}." \
            if unshared else ""
        raise ConfigError(f"global batch size {gbs} {too_few}: with no pipeline stages here, the script's {pp} "
                          f"pipeline ranks fold into data parallelism (dp = world {t.world_size} / (tp × cp)), and "
                          f"every rank needs whole micro-batches of every step.{why} Pipeline parallelism is not "
                          f"available; give a global batch that is a multiple of {dp}, or run on fewer processes")
    values["gradient_accumulation_steps"] = gradient_accumulation_steps(gbs, mbs, dp)
    t.notes.append(f"batch: world {t.world_size} = tp {values.get('tp_size', 1)} × cp {values.get('cp_size', 1)} × dp "
                   f"{dp}; global batch {gbs} = micro batch {mbs} × dp {dp} × accumulation "
                   f"{values['gradient_accumulation_steps']}")


def _share_pipeline_ranks(t, values, gbs, mbs, dp, pp):
    """Folded, the pipeline ranks leave too few samples per step: give them to context or tensor parallelism,
    whose ranks share samples as Megatron's pipeline ranks do (pipeline_share.py). All pp of them keep Megatron's dp
    and accumulation; when the model's shapes do not allow that, the smallest part of them that lets the global
    batch split gives the rest to data parallelism (same global batch and micro batch, fewer accumulation steps).
    Returns dp and, when nothing fits, why the whole factor does not."""
    tp, cp, world = values.get("tp_size", 1), values.get("cp_size", 1), t.world_size
    megatron_dp = world // (tp * cp * pp) if world % (tp * cp * pp) == 0 else 0
    if not megatron_dp or gbs % (mbs * megatron_dp):
        return dp, []  # Megatron itself could not split this batch: the refusal names the numbers
    parts = [pp] + [f for f in range(2, pp) if pp % f == 0 and gbs % (mbs * (world // (tp * cp * f))) == 0]
    whole_reasons = None
    for part in parts:
        share, reasons = pipeline_share.choose(values, t.given, part)
        whole_reasons = reasons if whole_reasons is None else whole_reasons
        if share is not None:
            break
    else:
        return dp, whole_reasons
    given = pipeline_share.apply(values, share)
    dp = data_parallel_size(world, values["tp_size"], values["cp_size"])
    why = (f"folded whole into data parallelism (dp {dp * part}) they would leave fewer than whole micro-batches of "
           f"{mbs} of the global batch {gbs} for every rank")
    if part == pp:
        text = f"its {pp} pipeline ranks share samples as {given}, since {why}; dp is {dp}, as in Megatron"
    else:
        text = (f"{part} of its {pp} pipeline ranks share samples as {given} and the other {pp // part} fold into "
                f"data parallelism, since {why}; dp is {dp} (Megatron's {megatron_dp}: the same global batch in "
                f"{gbs // (mbs * dp)} accumulation step(s) for its {gbs // (mbs * megatron_dp)}), as all {pp} do "
                f"not fit ({whole_reasons[0]})")
    for line in t.lines:
        if line.flag == "--pipeline-model-parallel-size":
            line.text = "no pipeline stages under FSDP2: " + text
    t.notes[:] = [n for n in t.notes if not n.startswith(f"pipeline parallelism {pp} folded")]
    return dp, []


def _fit_micro_batch(t, values, gbs, mbs, dp, pp, folded=1) -> int:
    """Folding pipeline ranks (or the tp/cp ranks of a family whose attention splits neither way) multiplies dp; keep
    the script's global batch by taking a smaller micro batch.

    The micro batch only trades memory for steps; the global batch is what training means, so it stays.
    """
    ranks = " and ".join(what for what, n in ((f"its {pp} pipeline ranks", pp),
                                              (f"its {folded} tensor/context-parallel ranks", folded)) if n > 1)
    for smaller in range(min(mbs - 1, gbs // dp), 0, -1):  # smaller × dp must divide gbs
        if gbs % (smaller * dp) == 0:
            values["per_device_train_batch_size"] = smaller
            t.notes.append(f"micro batch {mbs} → {smaller}: with {ranks} folded, dp is {dp}, and "
                           f"global batch {gbs} is not a multiple of {mbs} × {dp}; the global batch stays {gbs}")
            return smaller
    return mbs  # nothing fits: gradient_accumulation_steps() names every number


def derive_tokens(t, values: Dict[str, Any], dialect: str) -> None:
    """Megatron-DeepSpeed's token counts: every step consumes global batch × --seq-length tokens, so a count of
    tokens is a (fractional) count of steps; --train-tokens ends the run at the first step that reaches it."""
    g = t.given
    given = [f for f in ("--train-tokens", "--lr-decay-tokens", "--lr-warmup-tokens") if f in g]
    if not given:
        return
    gbs, seq = values.get("global_batch_size"), g.get("--seq-length")
    if not gbs or not seq:
        raise ConfigError(f"{given[0]} counts tokens: it needs the global batch (--global-batch-size and the world "
                          "size) and --seq-length to become steps")
    per_step = gbs * seq
    if "--train-tokens" in g and values.get("train_samples"):  # max_steps comes from the samples: stop by tokens
        values["train_tokens"] = g["--train-tokens"]
        t.origin["train_tokens"] = "--train-tokens"
        _line(t, "--train-tokens", f"training.train_tokens = {g['--train-tokens']}: the run ends before the first "
                                   "iteration that would start with that many tokens consumed, or at the end of "
                                   "--train-samples if sooner")
    elif "--train-tokens" in g:
        steps = math.ceil(g["--train-tokens"] / per_step)
        if values.get("max_steps", -1) <= 0 or steps < values["max_steps"]:
            values["max_steps"] = steps
        _line(t, "--train-tokens", f"training.max_steps = {values['max_steps']} (⌈{g['--train-tokens']} ÷ {per_step} "
                                   f"tokens per step⌉ = {steps}, or --train-iters if sooner)")
    for flag, name in (("--lr-decay-tokens", "lr_decay_steps"), ("--lr-warmup-tokens", "lr_warmup_steps")):
        if flag in g:
            values[name] = g[flag] / per_step
            _line(t, flag, f"training.{name} = {g[flag]} ÷ {per_step} tokens per step = {values[name]:g}")


def pai(t):
    """Pai-Megatron-Patch: --patch-tokenizer-type (its Hugging Face tokenizers, read from --load) and --dataset."""
    g = t.given
    kind = g.get("--patch-tokenizer-type")
    if kind is not None and "--tokenizer-type" in g:
        raise ConfigError(f"--patch-tokenizer-type {kind} and --tokenizer-type {g['--tokenizer-type']} both choose the "
                          "tokenizer; keep one")
    if kind is not None:
        if kind in PAI_OTHER_TOKENIZERS:
            t.reject("--patch-tokenizer-type", f"{kind} is Pai's own tokenizer code, not a Hugging Face tokenizer",
                     "--tokenizer-type HuggingFaceTokenizer --tokenizer-name-or-path <a HF tokenizer directory>")
        else:
            path = g.get("--tokenizer-name-or-path") or g.get("--load")
            if path is None:
                raise ConfigError(f"--patch-tokenizer-type {kind}: Pai-Megatron-Patch reads the tokenizer from --load; "
                                  "give --load or --tokenizer-name-or-path DIR (a Hugging Face tokenizer directory)")
            t.set("tokenizer_type", "HuggingFaceTokenizer")
            t.set("tokenizer_name_or_path", path)
            _line(t, "--patch-tokenizer-type", f"model.tokenizer_type = HuggingFaceTokenizer from {path}")
    dataset = g.get("--dataset")
    if dataset is not None:
        if dataset in PAI_IDXMAP_DATASETS:
            t.set("data_manager_type", "mg")
            _line(t, "--dataset", f"{dataset}: Megatron .bin/.idx data (--data-path), data_manager_type mg")
        else:
            t.reject("--dataset", f"Pai-Megatron-Patch's {dataset} reads raw JSON samples with its own templates and "
                     "padding", "preprocess to .bin/.idx (--dataset MMAP), or train JSON data with train_fsdp2.py "
                     "(data_manager_type lf)")


PAI_IDXMAP_DATASETS = ("MMAP", "LLama-Pretrain-Idxmap", "Qwen-Pretrain-Idxmap", "Mistral-Pretrain-Idxmap")
PAI_OTHER_TOKENIZERS = ("JiebaBPETokenizer", "IcetkGLM130BTokenizer", "BloomTokenizerFromHF", "ChatGLMTokenizerFromHF",
                        "GLM10BZHTokenizerFromHF")


def derive_steps(t, values: Dict[str, Any], dialect: str) -> None:
    """Iterations and schedule lengths; sample counts become (possibly fractional) steps of one global batch."""
    g = t.given
    for a, b in (("--train-iters", "--train-samples"), ("--lr-decay-iters", "--lr-decay-samples"),
                 ("--lr-warmup-iters", "--lr-warmup-samples"), ("--lr-warmup-fraction", "--lr-warmup-iters"),
                 ("--lr-warmup-fraction", "--lr-warmup-samples"), ("--lr-wsd-decay-iters", "--lr-wsd-decay-samples")):
        if a in g and b in g and not (a == "--lr-warmup-fraction" and not g[b]):
            raise ConfigError(f"{a} and {b} exclude each other; keep one")
    gbs = values.get("global_batch_size")
    if "--train-iters" in g:
        values["max_steps"] = g["--train-iters"]
        _line(t, "--train-iters")
        _at_least_one_step("--train-iters", g["--train-iters"], values["max_steps"])
    elif "--train-samples" in g:
        values["train_samples"] = g["--train-samples"]  # max_steps: validate counts the iterations
        values.pop("max_steps", None)
        _line(t, "--train-samples")
        t.origin["train_samples"] = t.origin["max_steps"] = "--train-samples"
    elif dialect == "megatron" and values.get("max_steps", -1) <= 0 and not values.get("train_samples"):
        raise ConfigError("add --train-iters (or --train-samples): Megatron needs the length of the run")
    for iters, samples, name in (("--lr-decay-iters", "--lr-decay-samples", "lr_decay_steps"),
                                 ("--lr-warmup-iters", "--lr-warmup-samples", "lr_warmup_steps"),
                                 ("--lr-wsd-decay-iters", "--lr-wsd-decay-samples", "lr_wsd_decay_steps")):
        if name == "lr_warmup_steps" and "--lr-warmup-fraction" in g:
            continue  # an --lr-warmup-iters/-samples of 0 beside the fraction: Megatron's default, the fraction rules
        if iters in g:
            values[name] = float(g[iters])
            _line(t, iters)
            t.origin[name] = iters
        elif samples in g:
            values[name] = _samples_to_steps(samples, g[samples], gbs)
            _line(t, samples, f"training.{name} = {g[samples]} ÷ {gbs} = {values[name]:g}")
            t.origin[name] = samples
    if dialect == "megatron" and "lr" not in values:
        raise ConfigError("add --lr: Megatron has no default learning rate")


def _at_least_one_step(flag, value, steps) -> None:
    if steps < 1:
        raise ConfigError(f"{flag} {value}: the run would train no iteration; give at least "
                          f"{'one global batch of samples' if flag == '--train-samples' else '1'}")


def _samples_to_steps(flag, samples, gbs) -> float:
    if not gbs:
        raise ConfigError(f"{flag} counts samples: add --global-batch-size (and the world size) to turn it into steps")
    return samples / gbs


# Group name (mapping.GROUP_FIELDS) -> its handler, run in this order after the plain and switch rows;
# load must come before architecture, which compares the architecture with the loaded checkpoint.
HANDLERS = {
    "precision": precision, "fp8": fp8, "optimizer": optimizer, "stage": stage, "instruction": instruction,
    "lora": lora, "dataloader": dataloader, "tokenizer": tokenizer, "recompute": recompute, "cp": context_and_experts,
    "load": load_paths, "architecture": architecture, "pipeline": pipeline, "save_parts": save_parts,
    "deepspeed": deepspeed, "pai": pai, "decoupled": decoupled_min_lr,
    "loss_scale": loss_scale, "weighted_split": weighted_split, "main_grads": main_grads_dtype,
}
# Handlers that need the merged values (YAML < Megatron flags < FSDP2 names): the batch and step arithmetic.
LATE_HANDLERS = {"batch": derive_batch, "steps": derive_steps, "tokens": derive_tokens,
                 "batch_schedule": derive_batch_schedule}
