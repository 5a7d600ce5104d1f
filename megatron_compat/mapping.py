"""The `mapped` rows of the flag registry, as data: which canonical field a Megatron flag sets, and how.

One constructor per kind of row:

    plain("--lr", "lr")                           the flag's value is the field's value
    plain("--lr-decay-style", "lr_scheduler_type", choices(LR_STYLES))
                                                  ... through a Converter (both directions)
    switch("--no-load-optim", "load_optim", False)
                                                  giving the flag sets the field to this value
    group("--recompute-method", "recompute", "parallel.recompute_modules (which layers)")
                                                  flags that only mean something together
    absorbed("--local-rank", "why it has no effect")

Everything else is derived from these rows: the forward translation (`translate._apply_rules` for plain and
switch rows), `--list-flags` and the migration guide (`registry.py`, `tools/gen_docs.py`) and the reverse
conversion `--to-megatron` (`reverse.to_megatron`). tests/test_mapping_rows.py round-trips every mapped row
(flags -> config -> flags -> config).

How to add a row:
  1. A flag whose value is a field: `plain(flag, field)`; give a Converter when the spellings differ
     (`choices({...})` for named values, `JOINED` for a path list kept as one string).
  2. A switch: `switch(flag, field, value)`; `also={field: value}` for fields it sets besides (the reverse
     writes the flag only where the config holds those too).
  3. Flags that combine: `group(flag, name, text)`, with the group's forward handler in `groups.HANDLERS`
     (or `groups.LATE_HANDLERS`, run after the merge), its reverse in `reverse.GROUP_REVERSE`, and the
     canonical fields it writes in `GROUP_FIELDS` below.
  4. When the round-trip test cannot invent a value for the flag (a choice, a value other flags constrain),
     give the row an `example=(...)`: the argv fragment that test adds to its base command line.
Then run `python tools/gen_docs.py` (the migration guide is generated from these rows).
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from fsdp2_core.config import field_section

LR_STYLES = {"constant": "constant", "linear": "linear", "cosine": "cosine",
             "inverse-square-root": "inverse_square_root", "WSD": "wsd"}


@dataclass(frozen=True)
class Converter:
    """A flag's value -> the field's value (ValueError refuses it, naming what is expected) and back."""
    forward: Callable[[Any], Any]
    backward: Callable[[Any], Any]


def _same(value):
    return value


SAME = Converter(_same, _same)
JOINED = Converter(" ".join, str.split)  # a list of paths (nargs *) kept as one space-separated string
NO_SPACES = Converter(lambda v: v.replace(" ", ""), _same)  # "99, 1, 0" -> "99,1,0"


def _pairs(words):
    """ModelLink's --tokenizer-kwargs KEY VALUE [KEY VALUE ...] -> {KEY: VALUE}."""
    if len(words) % 2:
        raise ValueError(f"expects KEY VALUE pairs, got {len(words)} words: {' '.join(words)}")
    return dict(zip(words[::2], words[1::2]))


KEY_VALUE_PAIRS = Converter(_pairs, lambda table: [w for pair in table.items() for w in pair])
# Megatron tests `if args.exit_interval and ...`: 0 is no exit interval
ZERO_IS_NONE = Converter(lambda v: None if v == 0 else v, _same)
# a limit of 0 or less keeps everything (None), as `max_keep <= 0` does in the forks that have one
NOT_POSITIVE_IS_NONE = Converter(lambda v: None if v is None or v <= 0 else v, _same)
# Megatron validates only when `args.eval_iters > 0`: a negative count evaluates nothing, as 0 does
NEGATIVE_IS_ZERO = Converter(lambda v: 0 if v is not None and v < 0 else v, _same)


def choices(table: Mapping[str, Any]) -> Converter:
    """Named values: Megatron's spelling -> ours, refusing any other."""
    inverse = {ours: theirs for theirs, ours in table.items()}

    def forward(value):
        if value not in table:
            raise ValueError(f"expects one of {', '.join(table)}, got {value!r}")
        return table[value]
    return Converter(forward, inverse.__getitem__)


@dataclass(frozen=True)
class Rule:
    """One registry row. Rows of data/flag_status.tsv carry only flags, status, target and replacement."""
    flags: Tuple[str, ...]
    status: str                  # mapped | absorbed | rejected | absorbed-at-default
    target: str                  # mapped: what it becomes (shown by --list-flags); otherwise the reason
    replacement: str = "-"
    kind: str = ""               # mapped rows: plain | switch | group
    field: Optional[str] = None  # plain and switch rows: the canonical field set
    value: Any = None            # switch rows: the value giving the flag sets
    convert: Converter = SAME    # plain rows
    also: Tuple[Tuple[str, Any], ...] = ()   # plain and switch rows: further fields set with it
    group: Optional[str] = None  # group rows: the handler name (groups.HANDLERS, reverse.GROUP_REVERSE)
    example: Tuple[str, ...] = dataclasses.field(default=(), compare=False)  # argv fragment for the round-trip test


def _where(name: str) -> str:
    return f"{field_section(name)}.{name}"


def _shown(value) -> str:
    return {True: "true", False: "false", None: "none"}.get(value, str(value)) if not isinstance(value, str) else value


def _also_text(also: Dict[str, Any]) -> str:
    return "".join(f"; also {_where(k)} = {_shown(v)}" for k, v in also.items())


def plain(flags: str, field_name: str, convert: Converter = SAME, note: str = "", also: Optional[Dict[str, Any]] = None,
          example: Tuple[str, ...] = ()) -> Rule:
    """The flag's value (through `convert`) is the field's value. `flags` may list several spellings."""
    also = dict(also or {})
    text = _where(field_name) + (f" ({note})" if note else "") + _also_text(also)
    return Rule(tuple(flags.split()), "mapped", text, kind="plain", field=field_name, convert=convert,
                also=tuple(also.items()), example=tuple(example))


def switch(flags: str, field_name: str, value: Any = True, note: str = "", also: Optional[Dict[str, Any]] = None,
           example: Tuple[str, ...] = ()) -> Rule:
    """Giving the flag sets the field to `value` (False for the --no-* spellings)."""
    also = dict(also or {})
    text = _where(field_name) + ("" if value is True else f" = {_shown(value)}") + (f" ({note})" if note else "")
    return Rule(tuple(flags.split()), "mapped", text + _also_text(also), kind="switch", field=field_name, value=value,
                also=tuple(also.items()), example=tuple(example))


def group(flags: str, name: str, text: str, example: Tuple[str, ...] = ()) -> Rule:
    """A flag handled together with the other flags of group `name` (see GROUP_FIELDS)."""
    if name not in GROUP_FIELDS:
        raise ValueError(f"group {name!r}: declare the fields it writes in GROUP_FIELDS")
    return Rule(tuple(flags.split()), "mapped", text, kind="group", group=name, example=tuple(example))


def absorbed(flags: str, reason: str) -> Rule:
    """Accepted with no effect. Most such rows live in data/flag_status.tsv; this is for the few argv parsing knows."""
    return Rule(tuple(flags.split()), "absorbed", reason)


# The canonical fields each group writes; the reverse conversion writes them through reverse.GROUP_REVERSE.
GROUP_FIELDS: Dict[str, Tuple[str, ...]] = {
    "pipeline": (),
    "batch": ("global_batch_size", "gradient_accumulation_steps"),
    "steps": ("max_steps", "train_samples", "lr_decay_steps", "lr_warmup_steps", "lr_wsd_decay_steps"),
    # beside a step schedule the global batch is Megatron's default (micro × dp), which no flag writes
    "batch_schedule": ("rampup_batch_size", "step_batch_size_schedule", "global_batch_size"),
    "decoupled": ("decoupled_min_lr",),
    "cp": ("cp_type",),
    "optimizer": ("optimizer",),
    "precision": ("param_dtype",),
    "fp8": ("fp8_format", "fp8_recipe", "fp8_amax_history_len", "fp8_amax_compute_algo", "fp8_param_gather",
            "quant_ignored_modules"),
    "recompute": ("recompute", "recompute_modules"),
    "dataloader": ("dataloader_type",),
    "stage": ("stage",),
    "instruction": ("is_instruction_dataset", "template", "enable_thinking"),
    "lora": ("lora_target_modules", "lora_r", "lora_alpha", "lora_dropout"),
    "tokenizer": ("tokenizer_model",),
    "load": ("resume_from_checkpoint", "model_name_or_path", "finetune"),
    "save_parts": ("save_optim", "save_rng", "save_only_model"),
    "architecture": ("architecture", "train_from_scratch", "model_id", "moe_seq_aux_loss_coeff", "moe_z_loss_coeff",
                     "moe_router_bias_update_rate", "mtp_num_layers", "mtp_loss_scaling_factor",
                     "dsa_indexer_loss_coeff", "moe_device_level_aux_loss_coeff", "moe_comm_aux_loss_coeff",
                     "moe_balance_per_sample"),
    "deepspeed": ("per_device_train_batch_size", "global_batch_size", "param_dtype", "max_grad_norm", "lr",
                  "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay"),
    "tokens": ("max_steps", "train_tokens", "lr_decay_steps", "lr_warmup_steps"),
    "pai": ("tokenizer_type", "tokenizer_name_or_path", "data_manager_type"),
    "main_grads": ("reduce_dtype",),
    "weighted_split": ("train_weighted_split_paths", "valid_weighted_split_paths", "test_weighted_split_paths",
                       "train_weighted_split_paths_path", "valid_weighted_split_paths_path",
                       "test_weighted_split_paths_path", "data_manager_type"),
    "loss_scale": ("loss_scale", "initial_loss_scale", "min_loss_scale", "loss_scale_window", "hysteresis"),
}

SAMPLES = "= samples ÷ global batch"
DS_EXAMPLE = "examples/megatron_deepspeed/ds_config.json"  # a DeepSpeed config, for the round-trip example
WEIGHTED_EXAMPLE = "examples/weighted_split"  # group files of --*-weighted-split-paths-path, for the same

MAPPED_RULES = [
    # --- parallelism ---
    plain("--tensor-model-parallel-size --model-parallel-size", "tp_size",
          example=("--tensor-model-parallel-size", "2")),
    switch("--sequence-parallel", "sequence_parallel", note="on by default with tensor parallelism, as Megatron "
           "recommends"),
    group("--pipeline-model-parallel-size", "pipeline",
          "folded into FSDP sharding: data-parallel size = world / (tp × cp); when too few samples per step are "
          "left for the folded ranks, they share samples as context- or tensor-parallel ranks instead",
          example=("--pipeline-model-parallel-size", "2", "--micro-batch-size", "4", "--global-batch-size", "8")),
    plain("--context-parallel-size", "cp_size", example=("--context-parallel-size", "2")),
    group("--context-parallel-algo", "cp",
          "parallel.cp_type (ulysses; ring-style algorithms become Ulysses when heads divide by cp)",
          example=("--context-parallel-size", "2", "--context-parallel-algo", "megatron_cp_algo")),
    plain("--expert-model-parallel-size", "ep_size", example=("--expert-model-parallel-size", "2")),
    group("--expert-tensor-parallel-size", "cp", "experts are never tensor-split (1 accepted; above 1 refused)",
          example=("--expert-tensor-parallel-size", "1")),
    plain("--distributed-timeout-minutes", "distributed_timeout_minutes",
          example=("--distributed-timeout-minutes", "30")),
    # --- batch and steps ---
    plain("--micro-batch-size --batch-size", "per_device_train_batch_size", example=("--micro-batch-size", "1")),
    group("--global-batch-size", "batch",
          "training.global_batch_size; gradient_accumulation_steps = global / (micro × dp)",
          example=("--global-batch-size", "32")),
    group("--train-iters", "steps", "training.max_steps", example=("--train-iters", "7")),
    group("--train-samples", "steps", "training.train_samples; max_steps as Megatron's update_train_iters counts them "
          "(samples ÷ global batch, or through a batch-size ramp-up); LR decay and weight-decay increment default to "
          "them", example=("--train-samples", "320")),
    group("--rampup-batch-size", "batch_schedule",
          "training.rampup_batch_size [start, increment, samples]: the global batch grows from start by increment "
          "over that many consumed samples up to --global-batch-size; each iteration takes the current batch's "
          "micro-batches and advances the LR schedule by it (megatron-core 0.16; newer Megatron-LM ignores the flag "
          "for --step-batch-size-schedule)",
          example=("--global-batch-size", "32", "--rampup-batch-size", "8", "8", "600", "--train-samples", "2000")),
    group("--step-batch-size-schedule", "batch_schedule",
          "training.step_batch_size_schedule: 'THRESHOLD:BATCH ...', thresholds in tokens (÷ --seq-length into "
          "samples), the global batch from each threshold on (Megatron-LM's StepBatchsizeNumMicroBatchesCalculator)",
          example=("--step-batch-size-schedule", "0:8 0.3K:16 1K:32")),
    # --- learning rate and optimizer ---
    plain("--lr", "lr"),
    plain("--min-lr", "min_lr", example=("--min-lr", "1e-5")),
    plain("--lr-decay-style", "lr_scheduler_type", choices(LR_STYLES), example=("--lr-decay-style", "WSD")),
    group("--lr-decay-iters", "steps", "training.lr_decay_steps", example=("--lr-decay-iters", "50")),
    group("--lr-decay-samples", "steps", f"training.lr_decay_steps {SAMPLES}", example=("--lr-decay-samples", "40")),
    group("--lr-warmup-iters", "steps", "training.lr_warmup_steps", example=("--lr-warmup-iters", "5")),
    group("--lr-warmup-samples", "steps", f"training.lr_warmup_steps {SAMPLES}", example=("--lr-warmup-samples", "24")),
    plain("--lr-warmup-fraction --warmup", "warmup_ratio"),
    plain("--lr-warmup-init", "lr_warmup_init"),
    plain("--decoupled-lr", "decoupled_lr", note="the input embedding and output layer (tied: the shared weight) "
          "peak at this LR on the same warmup and decay; the other parameters keep --lr", example=("--decoupled-lr",
                                                                                                  "5e-4")),
    group("--decoupled-min-lr", "decoupled", "training.decoupled_min_lr: the embedding and output layer's minimum LR "
          "(only with --decoupled-lr, as in Megatron; without it the flag has no effect)",
          example=("--decoupled-lr", "5e-4", "--decoupled-min-lr", "5e-6")),
    plain("--lr-wsd-decay-style", "lr_wsd_decay_style", example=("--lr-wsd-decay-style", "cosine")),
    group("--lr-wsd-decay-iters", "steps", "training.lr_wsd_decay_steps", example=("--lr-wsd-decay-iters", "9")),
    group("--lr-wsd-decay-samples", "steps", f"training.lr_wsd_decay_steps {SAMPLES}",
          example=("--lr-wsd-decay-samples", "72")),
    plain("--weight-decay", "weight_decay"),
    plain("--start-weight-decay", "start_weight_decay"),
    plain("--end-weight-decay", "end_weight_decay"),
    plain("--weight-decay-incr-style", "weight_decay_incr_style",
          example=("--weight-decay-incr-style", "linear", "--start-weight-decay", "0.0", "--end-weight-decay", "0.1")),
    plain("--adam-beta1", "adam_beta1"),
    plain("--adam-beta2", "adam_beta2"),
    plain("--adam-eps", "adam_epsilon"),
    plain("--clip-grad", "max_grad_norm"),
    group("--optimizer", "optimizer", "training.optimizer (adam → adamw: Megatron's Adam decouples weight decay; "
          "sgd → sgd)", example=("--optimizer", "sgd")),
    plain("--sgd-momentum", "sgd_momentum", example=("--optimizer", "sgd", "--sgd-momentum", "0.8")),
    plain("--seed", "seed"),
    switch("--deterministic-mode --npu-deterministic --use-deter-comp", "deterministic",
           note="deterministic kernels and collectives: torch.use_deterministic_algorithms, cuBLAS's fixed "
                "workspace, NCCL_ALGO=Ring and HCCL_DETERMINISTIC unless the environment sets them"),
    group("--bf16", "precision", "parallel.param_dtype = bf16"),
    group("--fp16", "precision", "parallel.param_dtype = fp16, with Megatron's dynamic loss scaling unless "
          "--loss-scale fixes the scale"),
    # --- fp16 loss scaling (fsdp2_core/train/loss_scale.py); under --deepspeed the DeepSpeed config decides ---
    group("--loss-scale", "loss_scale", "training.loss_scale: a static loss scale (fp16, or bf16 if asked)",
          example=("--fp16", "--loss-scale", "4096")),
    group("--initial-loss-scale", "loss_scale", "training.initial_loss_scale (fp16 dynamic loss scaling)",
          example=("--fp16", "--initial-loss-scale", "65536")),
    group("--min-loss-scale", "loss_scale", "training.min_loss_scale (fp16 dynamic loss scaling)",
          example=("--fp16", "--min-loss-scale", "2")),
    group("--loss-scale-window", "loss_scale", "training.loss_scale_window (fp16 dynamic loss scaling)",
          example=("--fp16", "--loss-scale-window", "500")),
    group("--hysteresis", "loss_scale", "training.hysteresis (fp16 dynamic loss scaling)",
          example=("--fp16", "--hysteresis", "4")),
    # --- float8 / MXFP8 ---
    group("--fp8-format", "fp8", "model.fp8_format (torchao float8 training, FP8 GPUs only); with --fp8-recipe mxfp8: "
          "model.quant_recipe mxfp8", example=("--fp8-format", "e4m3")),
    group("--fp8-recipe", "fp8", "model.fp8_recipe (tensorwise / delayed → torchao tensorwise, blockwise → torchao "
          "rowwise); mxfp8 → model.quant_recipe mxfp8", example=("--fp8-format", "e4m3", "--fp8-recipe", "tensorwise")),
    group("--fp8-amax-history-len", "fp8", "model.fp8_amax_history_len (recorded; torchao scales dynamically)",
          example=("--fp8-format", "hybrid", "--fp8-amax-history-len", "16")),
    group("--fp8-amax-compute-algo", "fp8", "model.fp8_amax_compute_algo (recorded; torchao scales dynamically)",
          example=("--fp8-format", "hybrid", "--fp8-amax-compute-algo", "max")),
    group("--fp8-param-gather", "fp8", "model.fp8_param_gather (torchao float8 all-gather in FSDP)",
          example=("--fp8-format", "e4m3", "--fp8-param-gather")),
    group("--fp8-e4m3", "fp8", "model.fp8_format e4m3 (Megatron's spelling before --fp8-format)",
          example=("--fp8-e4m3",)),
    group("--fp8-hybrid", "fp8", "model.fp8_format hybrid (Megatron's spelling before --fp8-format)",
          example=("--fp8-hybrid",)),
    group("--first-last-layers-bf16", "fp8", "model.quant_ignored_modules += the first N and last M decoder layers "
          "(kept in bf16 under FP8)", example=("--fp8-format", "hybrid", "--num-layers", "4",
                                                "--first-last-layers-bf16")),
    group("--num-layers-at-start-in-bf16", "fp8", "N of --first-last-layers-bf16 (default 1)",
          example=("--fp8-format", "hybrid", "--num-layers", "4", "--first-last-layers-bf16",
                   "--num-layers-at-start-in-bf16", "2")),
    group("--num-layers-at-end-in-bf16", "fp8", "M of --first-last-layers-bf16 (default 1)",
          example=("--fp8-format", "hybrid", "--num-layers", "4", "--first-last-layers-bf16",
                   "--num-layers-at-end-in-bf16", "2")),
    switch("--grad-reduce-in-bf16", "reduce_dtype", "bf16"),
    group("--main-grads-dtype", "main_grads", "parallel.reduce_dtype: bf16 reduces gradients in bf16, as "
          "--grad-reduce-in-bf16 does (with --use-precision-aware-optimizer, which Megatron requires for it); fp32 "
          "is the default", example=("--main-grads-dtype", "bf16", "--use-precision-aware-optimizer")),
    switch("--calculate-per-token-loss", "calculate_per_token_loss"),
    # --- activation recompute ---
    group("--recompute-granularity", "recompute", "parallel.recompute + recompute_modules",
          example=("--recompute-granularity", "full", "--recompute-method", "uniform")),
    group("--recompute-method --activations-checkpoint-method", "recompute",
          "parallel.recompute_modules (which layers)",
          example=("--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1")),
    group("--recompute-num-layers --activations-checkpoint-num-layers --checkpoint-num-layers", "recompute",
          "parallel.recompute_modules (how many layers)",
          example=("--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1")),
    group("--checkpoint-activations", "recompute",
          "parallel.recompute of every layer: the old spelling of --recompute-granularity full --recompute-method "
          "uniform (Megatron-DeepSpeed still reads it)", example=("--checkpoint-activations",)),
    group("--recompute-activations", "recompute", "parallel.recompute with selective (attention) recompute"),
    group("--recompute-modules", "recompute", "parallel.recompute_modules",
          example=("--recompute-granularity", "selective", "--recompute-modules", "mlp", "layernorm")),
    # --- data ---
    plain("--data-path", "dataset", JOINED, "the prefix list", also={"data_manager_type": "mg"},
          example=("--data-path", "0.3", "/data/a_text_document", "0.7", "/data/b_text_document")),
    plain("--split", "split", NO_SPACES, example=("--split", "99,1,0")),
    plain("--train-data-path", "train_data_path", JOINED, also={"data_manager_type": "mg"},
          example=("--train-data-path", "/data/train_text_document")),
    plain("--valid-data-path", "valid_data_path", JOINED, also={"data_manager_type": "mg"},
          example=("--valid-data-path", "/data/valid_text_document")),
    plain("--test-data-path", "test_data_path", JOINED, also={"data_manager_type": "mg"},
          example=("--test-data-path", "/data/test_text_document")),
    switch("--mock-data", "mock_data", also={"data_manager_type": "mg"}),
    # bigscience's / bigcode's second data mode: weighted dataset groups over document ranges (weighted_split_flags)
    group("--train-weighted-split-paths", "weighted_split",
          "data.train_weighted_split_paths: one group 'NAME: WEIGHT START:END PATH, ...', each prefix restricted to "
          "its documents [round(START·N), round(END·N)) and blended by weight as the forks do; excludes --data-path "
          "and --split", example=("--train-weighted-split-paths", "TRAIN: 0.7 0:0.95 /data/a, 0.3 0:1 /data/b")),
    group("--valid-weighted-split-paths", "weighted_split",
          "data.valid_weighted_split_paths: validation groups, each evaluated on its own and logged under its NAME",
          example=("--train-weighted-split-paths", "TRAIN: 1 0:0.95 /data/a", "--valid-weighted-split-paths",
                   "VALID_A: 1 0.95:1 /data/a", "VALID_B: 1 0.9:1 /data/b")),
    group("--test-weighted-split-paths", "weighted_split",
          "data.test_weighted_split_paths: test groups, each evaluated on its own at the end under its NAME",
          example=("--train-weighted-split-paths", "TRAIN: 1 0:0.95 /data/a", "--test-weighted-split-paths",
                   "TEST_A: 1 0.95:1 /data/a")),
    *[group(f"--{split}-weighted-split-paths-path", "weighted_split",
            f"data.{split}_weighted_split_paths read from a file of one line, each group in double quotes; read "
            "when the flags are translated (a missing file is refused)",
            example=(("--train-weighted-split-paths-path", f"{WEIGHTED_EXAMPLE}/train_data_paths.txt")
                     + (() if split == "train" else (f"--{split}-weighted-split-paths-path",
                                                      f"{WEIGHTED_EXAMPLE}/valid_data_paths.txt"))))
      for split in ("train", "valid", "test")],
    plain("--data-cache-path", "data_cache_path"),
    plain("--seq-length --encoder-seq-length", "cutoff_len", note="--encoder-seq-length: Megatron's other name for "
          "a GPT model's sequence length", example=("--seq-length", "16")),
    switch("--no-shuffle", "disable_shuffling"),
    plain("--num-workers", "dataloader_num_workers"),
    plain("--workers", "preprocessing_num_workers"),
    switch("--reset-position-ids", "reset_position_ids"),
    switch("--reset-attention-mask --use-packed-seq-params", "reset_attention_mask",
           note="--use-packed-seq-params: a swiss-ai fork's name for the same attention within each document, "
                "cut at end-of-document tokens"),
    switch("--eod-mask-loss", "eod_mask_loss"),
    switch("--no-create-attention-mask-in-dataloader", "create_attention_mask_in_dataloader", False),
    group("--dataloader-type", "dataloader", "data.dataloader_type (single: dataset order; cyclic: Megatron's "
          "random sampler, epochs seeded by their number; external refused)", example=("--dataloader-type", "cyclic")),
    switch("--no-data-sharding", "data_sharding", False,
           note="with --dataloader-type cyclic: one shuffle of all samples dealt to the ranks"),
    switch("--no-shared-storage", "no_shared_storage"),
    # fill-in-the-middle: Megatron-LM's GPTFIMDataset (--fim-data); bigcode's fork turned it on with --fim-rate
    switch("--fim-data", "fim_data", note="samples become fill-in-the-middle samples as Megatron-LM's GPTFIMDataset "
           "makes them; the tokenizer must hold the FIM tokens"),
    plain("--fim-rate", "fim_rate", note="turns FIM on as bigcode's Megatron-LM did, with or without --fim-data; 0 "
          "leaves the samples as they are", also={"fim_data": True}),
    plain("--fim-spm-rate", "fim_spm_rate"),
    plain("--fim-split-sample", "fim_split_sample",
          example=("--fim-data", "--fim-split-sample", "<file_sep>", "--fim-fragment-rate", "0.5")),
    plain("--fim-fragment-rate", "fim_fragment_rate"),
    plain("--fim-no-prefix", "fim_no_prefix"),
    plain("--fim-prefix-token", "fim_prefix_token"),
    plain("--fim-middle-token", "fim_middle_token"),
    plain("--fim-suffix-token", "fim_suffix_token"),
    plain("--fim-pad-token", "fim_pad_token"),
    plain("--fim-eod-token", "fim_eod_token"),
    switch("--pack", "packing"),
    switch("--neat-pack", "neat_packing"),
    group("--prompt-type", "instruction", "data.template (qwen3, llama3 and empty render as MindSpeed-LLM's; "
          "preprocessed instruction data needs none)", example=("--prompt-type", "qwen3")),
    group("--stage", "stage", "training.stage (sft; other stages refused)", example=("--stage", "sft")),
    group("--is-instruction-dataset", "instruction", "data.is_instruction_dataset: the --data-path prefix holds "
          "MindSpeed-LLM instruction data (<prefix>_packed_*_document.bin/.idx)"),
    switch("--padded-samples", "padded_samples",
           note="MindSpeed-LLM's instruction data: each epoch topped up to whole global batches from index 0"),
    group("--enable-thinking", "instruction", "data.enable_thinking (true / false / none)",
          example=("--enable-thinking", "false")),
    # --- LoRA (peft) ---
    group("--lora-target-modules", "lora", "model.lora_target_modules (linear_qkv → q/k/v_proj, linear_proj → o_proj, "
          "linear_fc1 → gate/up_proj, linear_fc2 → down_proj)", example=("--lora-target-modules", "linear_qkv")),
    group("--lora-r", "lora", "model.lora_r (with --lora-target-modules)",
          example=("--lora-target-modules", "linear_proj", "--lora-r", "4")),
    group("--lora-alpha", "lora", "model.lora_alpha (with --lora-target-modules)",
          example=("--lora-target-modules", "linear_fc1", "--lora-alpha", "8")),
    group("--lora-dropout", "lora", "model.lora_dropout (with --lora-target-modules)",
          example=("--lora-target-modules", "linear_fc2", "--lora-dropout", "0.1")),
    switch("--save-lora-to-hf", "save_hf_weights",
           note="with LoRA, the adapter is exported in PEFT format to <save>/hf_adapter/"),
    # MindSpeed converts each saved checkpoint; the engine writes the HF model once, when training completes
    switch("--enable-mg2hf-convert", "save_hf_weights",
           note="MindSpeed-LLM's Megatron-to-HF export: written once, at the end of a completed run, to "
                "<save>/hf_model/"),
    # --- tokenizer ---
    plain("--tokenizer-type", "tokenizer_type", example=("--tokenizer-type", "GPT2BPETokenizer")),
    group("--tokenizer-model", "tokenizer",
          "model.tokenizer_model (and tokenizer_name_or_path for Hugging Face directories)",
          example=("--tokenizer-model", "/tok/model")),
    plain("--tokenizer-name-or-path", "tokenizer_name_or_path"),
    plain("--tokenizer-kwargs", "tokenizer_kwargs", KEY_VALUE_PAIRS,
          note="ModelLink's keyword arguments of the Hugging Face tokenizer, as KEY VALUE pairs",
          example=("--tokenizer-kwargs", "eos_token", "<|endoftext|>", "pad_token", "<|extra_0|>")),
    plain("--tokenizer-file", "tokenizer_model", note="bigcode's tokenizer.json for --tokenizer-type TokenizerFromFile",
          example=("--tokenizer-type", "TokenizerFromFile", "--tokenizer-file", "/tok/tokenizer.json")),
    plain("--vocab-file", "vocab_file"),
    plain("--merge-file", "merge_file"),
    plain("--vocab-size", "vocab_size", example=("--vocab-size", "120")),
    plain("--make-vocab-size-divisible-by", "make_vocab_size_divisible_by"),
    plain("--padded-vocab-size --pad-vocab-size-to", "padded_vocab_size", example=("--padded-vocab-size", "256")),
    switch("--tokenizer-not-use-fast", "use_fast_tokenizer", False),
    # --- checkpoints and run control ---
    plain("--save", "output_dir"),
    group("--load", "load", "training.resume_from_checkpoint = latest when equal to --save; a Megatron-LM "
          "checkpoint is continued (weights, iteration, consumed samples, LR schedule); else "
          "model.model_name_or_path", example=("--load", "/ckpt/run")),
    switch("--no-load-optim", "load_optim", False),
    switch("--no-load-rng", "load_rng", False),
    group("--finetune", "load", "training.finetune (without --load there is nothing to fine-tune: it stays false, "
          "as Megatron then trains from scratch)", example=("--load", "/hf/model", "--finetune")),
    group("--no-save-optim", "save_parts", "training.save_optim = false (with --no-save-rng: save_only_model)"),
    group("--no-save-rng", "save_parts", "training.save_rng = false (with --no-save-optim: save_only_model)"),
    switch("--async-save", "save_async"),
    plain("--save-interval --persistent-save-interval", "save_steps"),
    plain("--save-retain-interval", "save_retain_interval", example=("--save-retain-interval", "1000")),
    plain("--max-checkpoints", "save_total_limit", NOT_POSITIVE_IS_NONE,
          note="a MindSpeed-LLM fork's limit: the newest N checkpoints are kept", example=("--max-checkpoints", "2")),
    plain("--log-interval", "logging_steps"),
    plain("--eval-interval", "eval_interval"),
    plain("--eval-iters", "eval_iters", NEGATIVE_IS_ZERO, note="a negative count evaluates nothing, as 0: Megatron "
          "validates only when --eval-iters > 0"),
    plain("--exit-interval", "exit_interval", ZERO_IS_NONE, note="0 is no exit interval, as in Megatron"),
    plain("--exit-duration-in-mins", "exit_duration_in_mins"),
    switch("--exit-signal-handler", "exit_signal_handler"),
    switch("--no-check-for-nan-in-loss-and-grad", "check_for_nan_in_loss_and_grad", False),
    plain("--tensorboard-dir", "tensorboard_dir"),
    plain("--wandb-project --wandb-project-name --wandb_project", "wandb_project"),
    plain("--wandb-exp-name --wandb-name", "wandb_exp_name"),
    plain("--wandb-save-dir", "wandb_save_dir"),
    plain("--wandb-entity --wandb-entity-name --wandb_entity", "wandb_entity"),
    plain("--wandb-id --wandb_id", "wandb_id", note="a run with this id is resumed"),
    plain("--wandb-group", "wandb_group", note="Megatron-DeepSpeed forks' and MindSpeed forks' wandb run group",
          example=("--wandb-project", "p", "--wandb-group", "sweep-1")),
    # --- profiling ---
    switch("--profile", "profile"),
    plain("--profile-step-start", "profile_step_start", example=("--profile-step-start", "2")),
    plain("--profile-step-end", "profile_step_end", example=("--profile-step-end", "20")),
    plain("--profile-ranks", "profile_ranks", example=("--profile-ranks", "0", "1")),
    plain("--profile-level", "profile_level", example=("--profile-level", "level1")),
    plain("--profile-export-type", "profile_export_type", example=("--profile-export-type", "db")),
    switch("--profile-data-simplification", "profile_data_simplification"),
    switch("--profile-with-cpu", "profile_with_cpu"),
    switch("--profile-with-stack", "profile_with_stack"),
    switch("--profile-with-memory", "profile_with_memory"),
    switch("--profile-record-shapes", "profile_record_shapes"),
    plain("--profile-save-path", "profile_save_path"),
    # --- fused kernels ---
    switch("--use-flash-attn --use-flash-attn-v2 --use-flash-attn-triton --use-flash-attn-builder", "use_flash_attn"),
    switch("--use-fused-rmsnorm", "use_fused_rmsnorm"),
    switch("--use-fused-rotary-pos-emb", "use_fused_rotary_pos_emb"),
    switch("--moe-grouped-gemm", "moe_grouped_gemm"),
    switch("--use-triton-gdn", "use_triton_gdn"),
    plain("--mamba-chunk-size", "gdn_chunk_size", note="MindSpeed's chunk of the Gated DeltaNet layers' chunked "
          "delta rule (Qwen3-Next); exact at any size"),
    # --- forks' own flags (data/fork_flags.tsv) ---
    switch("--use-z-loss", "z_loss_coeff", 1e-4,
           note="llm-jp's Megatron-LM: PaLM's z-loss, 1e-4 × logsumexp(logits)² added to every token's loss"),
    group("--deepspeed --deepscale", "deepspeed",
          "DeepSpeed's engine: FSDP2 does its job (sharding as --zero-stage / the config's ZeRO stage asks, or more)",
          example=("--deepspeed", "--deepspeed_config", DS_EXAMPLE)),
    group("--deepspeed_config --deepscale_config", "deepspeed",
          "read: train_batch_size, train_micro_batch_size_per_gpu, gradient_accumulation_steps, bf16/fp16, "
          "gradient_clipping and the optimizer's lr/betas/eps/weight_decay become the matching fields (a flag that "
          "says otherwise is named); its ZeRO stage is reported",
          example=("--deepspeed", "--deepspeed_config", DS_EXAMPLE)),
    group("--train-tokens", "tokens", "training.max_steps = the first step whose tokens (global batch × "
          "--seq-length per step) reach it, or --train-iters if sooner; beside --train-samples, training.train_tokens "
          "(the run stops by tokens or samples, whichever first, as Megatron-DeepSpeed's loop)",
          example=("--train-tokens", "20480")),
    group("--lr-decay-tokens", "tokens", "training.lr_decay_steps = tokens ÷ (global batch × --seq-length)",
          example=("--lr-decay-tokens", "40960")),
    group("--lr-warmup-tokens", "tokens", "training.lr_warmup_steps = tokens ÷ (global batch × --seq-length)",
          example=("--lr-warmup-tokens", "2048")),
    plain("--ds-sequence-parallel-size", "cp_size",
          note="DeepSpeed-Ulysses sequence parallelism is Ulysses context parallelism",
          example=("--ds-sequence-parallel-size", "2")),
    group("--patch-tokenizer-type", "pai", "Pai-Megatron-Patch's Hugging Face tokenizer types: model.tokenizer_type = "
          "HuggingFaceTokenizer, read from --load (where Pai reads it) unless --tokenizer-name-or-path is given",
          example=("--patch-tokenizer-type", "Qwen2Tokenizer", "--load", "/hf/qwen2")),
    group("--dataset", "pai", "Pai-Megatron-Patch's dataset kind: MMAP and the *-Idxmap kinds are Megatron .bin/.idx "
          "data (data_manager_type mg); its JSON and raw kinds are refused", example=("--dataset", "MMAP")),
    # --- accepted with no effect ---
    absorbed("--local-rank --local_rank",
             "added by torch.distributed.launch; the rank comes from the environment (LOCAL_RANK)"),
    absorbed("--use-mcore-models", "the engine's models are always the current ones (accepted, no effect)"),
]

# Architecture flags: handled together by architecture.build_architecture (forward) and reverse.architecture_flags
# (back); the text names the Hugging Face config field. Examples build on one family's flags.
ROPE = ("--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu", "--hidden-dropout", "0")
GEMMA = ("--position-embedding-type", "rope", "--normalization", "RMSNorm", "--hidden-dropout", "0",
         "--disable-bias-linear", "--input-embeds-norm", "--geglu")
GEMMA2 = GEMMA + ("--post-norm",)
MOE = ROPE + ("--disable-bias-linear", "--num-experts", "4", "--moe-router-topk", "2")
QWEN3_MOE = MOE + ("--qk-layernorm",)
SIGMOID = MOE + ("--moe-router-score-function", "sigmoid")
MLA = SIGMOID + ("--multi-latent-attention", "--qk-layernorm", "--kv-lora-rank", "16", "--qk-head-dim", "16",
                 "--qk-pos-emb-head-dim", "8", "--v-head-dim", "16")
DSV2_GROUPED = MOE + ("--multi-latent-attention", "--qk-layernorm", "--kv-lora-rank", "16", "--qk-head-dim", "16",
                      "--qk-pos-emb-head-dim", "8", "--v-head-dim", "16", "--moe-router-load-balancing-type",
                      "group_limited_greedy", "--n-group", "2", "--topk-group", "1")
QWEN3_NEXT = ROPE + ("--disable-bias-linear", "--qk-layernorm", "--linear-key-head-dim", "16",
                     "--linear-value-head-dim", "16", "--linear-num-key-heads", "2", "--linear-num-value-heads", "4",
                     "--full-attention-interval", "2")
GDN = QWEN3_NEXT[:-2] + ("--experimental-attention-variant", "gated_delta_net", "--attention-output-gate",
                         "--linear-attention-freq", "2")
GPT_OSS = ("--position-embedding-type", "rope", "--normalization", "RMSNorm", "--hidden-dropout", "0", "--num-experts",
           "4", "--moe-router-topk", "2", "--quick-geglu", "--glu-linear-offset", "1.0",
           "--activation-func-clamp-value", "7.0", "--softmax-type", "learnable")
DSA = MLA + ("--q-lora-rank", "16", "--enable-dsa-indexer", "--index-n-heads", "2", "--index-head-dim", "16",
             "--index-topk", "4")
LLAMA3 = ("--rope-scaling-type", "llama3", "--rope-scaling-factor", "8", "--low-freq-factor", "1",
          "--high-freq-factor", "4", "--original-max-position-embeddings", "8192")
# Base has --num-layers 2: a two-layer pattern, Mamba2 then attention
HYBRID = ("--hybrid-layer-pattern", "M*", "--position-embedding-type", "none", "--normalization", "RMSNorm",
          "--disable-bias-linear", "--hidden-dropout", "0", "--mamba-head-dim", "16", "--mamba-num-groups", "2",
          "--mamba-state-dim", "16")
YARN = ("--rope-scaling-type", "yarn", "--rope-scaling-factor", "4",
        "--rope-scaling-original-max-position-embeddings", "16")
# BASE's heads have 16 dimensions: 8 rotary frequencies, one factor each
LONGROPE = ("--rope-scaling-type", "longrope", "--rope-scaling-original-max-position-embeddings", "16",
            "--long-factor", "1,1.5,2,2.5,3,3.5,4,4.5", "--short-factor", "1,1,1,1,1.2,1.4,1.6,1.8")


def arch(flags: str, hf_field: str, example: Tuple[str, ...] = ()) -> Rule:
    """A flag of the architecture group: the Hugging Face config field it sets, or an engine field (model.*)."""
    return group(flags, "architecture", hf_field if hf_field.startswith("model.") else
                 f"model.architecture.{hf_field}", example)


MAPPED_RULES += [
    arch("--num-layers", "num_hidden_layers"),
    arch("--hidden-size", "hidden_size", ("--hidden-size", "128")),
    arch("--ffn-hidden-size --intermediate-size", "intermediate_size"),
    arch("--num-attention-heads", "num_attention_heads", ("--num-attention-heads", "8")),
    arch("--group-query-attention", "num_key_value_heads (with --num-query-groups)",
         ROPE + ("--group-query-attention", "--num-query-groups", "2")),
    arch("--num-query-groups", "num_key_value_heads", ROPE + ("--group-query-attention", "--num-query-groups", "1")),
    arch("--attention-head-type", "multiquery (bigcode's multi-query attention): one key/value head, GPT-BigCode's "
         "multi_query with learned positions, num_key_value_heads = 1 with rope; multihead changes nothing",
         ROPE + ("--attention-head-type", "multiquery")),
    arch("--num-key-value-heads", "num_key_value_heads (grouped-query attention with this many groups; "
         "Megatron-DeepSpeed's spelling)", ROPE + ("--num-key-value-heads", "2")),
    arch("--kv-channels", "head_dim", ROPE + ("--kv-channels", "32")),
    arch("--max-position-embeddings", "max_position_embeddings", ("--max-position-embeddings", "64")),
    arch("--position-embedding-type", "model family (learned → GPT-2, or OPT without linear biases; rope → "
         "Llama/Qwen, Gemma with a gated GeLU, GPT-NeoX with LayerNorm and GeLU, or StableLM with LayerNorm and "
         "SwiGLU; alibi with --embed-layernorm → BLOOM; none with a hybrid layer pattern → nemotron_h)", ROPE),
    arch("--embed-layernorm", "BLOOM's word_embeddings_layernorm (with --position-embedding-type alibi)",
         ("--position-embedding-type", "alibi", "--embed-layernorm", "--hidden-dropout", "0")),
    arch("--use-rotary-position-embeddings --use-llama2-rotary-position-embeddings", "rope position embeddings",
         ("--use-rotary-position-embeddings",) + ROPE[2:]),
    arch("--no-position-embedding", "no learned position table (rope families)", ROPE + ("--no-position-embedding",)),
    arch("--rotary-base --rope-theta --rotary-position-embeddings-theta", "rope_theta",
         ROPE + ("--rotary-base", "500000")),
    arch("--use-glm-rope", "the glm family (ChatGLM3, GLM-4): the rotary part's adjacent channel pairs rotated, "
         "with --rotary-percent (0.5) as partial_rotary_factor", ROPE + ("--disable-bias-linear", "--add-qkv-bias",
                                                                       "--use-glm-rope", "--rotary-percent", "0.5")),
    arch("--rotary-percent --partial-rotary-factor", "partial_rotary_factor", ROPE + ("--rotary-percent", "0.5")),
    arch("--normalization", "model family (LayerNorm → GPT-2 or OPT, with rope GPT-NeoX or StableLM; RMSNorm → "
         "Llama/Qwen, or Gemma with a gated GeLU)", ROPE),
    arch("--RMSNorm", "RMSNorm (Megatron-LLaMA's spelling of --normalization RMSNorm)",
         ("--position-embedding-type", "rope", "--RMSNorm", "--swiglu", "--hidden-dropout", "0")),
    arch("--norm-epsilon --layernorm-epsilon", "rms_norm_eps / layer_norm_epsilon"),
    arch("--swiglu", "hidden_act silu with a gated MLP", ROPE),
    arch("--geglu", "Gemma's gated MLP with exact GeLU (hidden_act gelu_python: Gemma's config reads gelu as "
         "the tanh one)", GEMMA),
    arch("--gelu-tanh", "Gemma's gated MLP with tanh GeLU (hidden_act gelu_pytorch_tanh)",
         GEMMA[:-1] + ("--gelu-tanh",)),
    arch("--input-embeds-norm", "Gemma's embeddings scaled by sqrt(hidden size) (required for Gemma)", GEMMA),
    arch("--post-norm", "Gemma 2's post_attention_layernorm / post_feedforward_layernorm on the attention and MLP "
         "outputs (required for Gemma 2)", GEMMA2),
    arch("--query-pre-attn-scalar", "query_pre_attn_scalar (Gemma 2's scores scaled by its inverse square root)",
         GEMMA2 + ("--query-pre-attn-scalar", "8")),
    arch("--attn-logit-softcapping", "attn_logit_softcapping (Gemma 2)", GEMMA2 + ("--attn-logit-softcapping", "50")),
    arch("--output-logit-softcapping", "final_logit_softcapping (Gemma 2; the engine's loss caps the logits too)",
         GEMMA2 + ("--output-logit-softcapping", "30")),
    arch("--interleave-sliding-window", "sliding_window with Gemma 2's layer_types: the odd layers (1-based) slide",
         GEMMA2 + ("--interleave-sliding-window", "16")),
    arch("--add-rmsnorm-offset", "Gemma's RMSNorm x · (1 + w); with any other RMSNorm family the same model, trained "
         "the same (Adam sees the same gradient; norms take no weight decay)", GEMMA + ("--add-rmsnorm-offset",)),
    arch("--untie-embeddings-and-output-weights --causal-lm",
         "tie_word_embeddings = false (Megatron-LLaMA's --causal-lm: its own lm_head, untied)",
         ROPE + ("--untie-embeddings-and-output-weights",)),
    arch("--disable-bias-linear", "attention_bias / mlp_bias = false (OPT's enable_bias with learned positions; "
         "StableLM's layout with rope, LayerNorm and SwiGLU)", ROPE + ("--disable-bias-linear",)),
    arch("--disable-bias-linear-fc", "attention_bias: with --disable-bias-attn-fc, Pai-Megatron-Patch's Qwen-1 biases "
         "(q/k/v only: the qwen2 family)", ROPE + ("--disable-bias-linear-fc", "--disable-bias-attn-fc")),
    arch("--disable-bias-attn-fc", "attention_bias: with --disable-bias-linear-fc (see there)",
         ROPE + ("--disable-bias-linear-fc", "--disable-bias-attn-fc")),
    arch("--scale-emb", "embedding_multiplier (MiniCPM's scales: the granite family)",
         ROPE + ("--disable-bias-linear", "--scale-emb", "12")),
    arch("--scale-depth", "residual_multiplier = D / sqrt(--num-layers) (MiniCPM; granite)",
         ROPE + ("--disable-bias-linear", "--scale-depth", "1.4")),
    arch("--dim-model-base", "logits_scaling = hidden / B (MiniCPM; granite)",
         ROPE + ("--disable-bias-linear", "--dim-model-base", "32")),
    arch("--add-qkv-bias --add-qkv-bias-linear", "bias on q, k, v only (Qwen2, Qwen2-MoE, GLM-4.5 families; ROCm's "
         "spelling --add-qkv-bias-linear)", ROPE + ("--disable-bias-linear", "--add-qkv-bias")),
    arch("--qk-layernorm", "q_norm/k_norm (Qwen3, GLM-4.5 use_qk_norm); with MLA its latent norms",
         ROPE + ("--disable-bias-linear", "--qk-layernorm")),
    arch("--init-method-std", "initializer_range"),
    arch("--attention-dropout", "attention_dropout"),
    arch("--hidden-dropout", "hidden dropout (GPT-2 resid/embd dropout, GPT-NeoX hidden_dropout; OPT's dropout and "
         "StableLM's hidden_dropout with the embedding dropout added; for Llama/Qwen families hidden_dropout, applied "
         "as Megatron does by fsdp2_core/models/hidden_dropout.py)"),
    # --- experts (megatron_compat/arch/moe.py picks the family from the router) ---
    arch("--num-experts", "num_experts / n_routed_experts (Qwen3-MoE, Mixtral, Qwen2-MoE, GLM-4.5, DeepSeek-V2/V3)",
         MOE),
    arch("--moe-router-topk", "num_experts_per_tok", MOE + ("--moe-router-topk", "1")),
    arch("--moe-ffn-hidden-size", "moe_intermediate_size", QWEN3_MOE + ("--moe-ffn-hidden-size", "32")),
    arch("--moe-intermediate-size", "moe_intermediate_size", QWEN3_MOE + ("--moe-intermediate-size", "48")),
    arch("--moe-aux-loss-coeff", "router_aux_loss_coef (aux_loss) / model.moe_seq_aux_loss_coeff (seq_aux_loss)",
         MOE + ("--moe-aux-loss-coeff", "0.01")),
    arch("--moe-router-load-balancing-type", "aux_loss → router_aux_loss_coef, seq_aux_loss → "
         "model.moe_seq_aux_loss_coeff, none; MindSpeed softmax_topk, noaux_tc and group_limited_greedy (DeepSeek-V2's "
         "router: topk_method group_limited_greedy, groups ranked by their best score)",
         MOE + ("--moe-router-load-balancing-type", "seq_aux_loss", "--moe-aux-loss-coeff", "0.001")),
    arch("--norm-topk-prob", "norm_topk_prob (MindSpeed: renormalise after --moe-router-pre-softmax with aux_loss)",
         QWEN3_MOE + ("--moe-router-pre-softmax", "--norm-topk-prob")),
    arch("--moe-router-pre-softmax", "norm_topk_prob = false (softmax over all experts, Qwen3-MoE / Qwen2-MoE; "
         "with MLA the DeepSeek-V2 family)",
         QWEN3_MOE + ("--moe-router-pre-softmax",)),
    arch("--moe-router-score-function", "sigmoid → the GLM-4.5 family (DeepSeek-V3 with MLA)", SIGMOID),
    arch("--moe-router-enable-expert-bias", "model.moe_router_bias_update_rate: e_score_correction_bias moves after "
         "every step (aux-loss-free balancing)", SIGMOID + ("--moe-router-enable-expert-bias",)),
    arch("--moe-router-bias-update-rate", "model.moe_router_bias_update_rate (with --moe-router-enable-expert-bias)",
         SIGMOID + ("--moe-router-enable-expert-bias", "--moe-router-bias-update-rate", "0.01")),
    arch("--moe-router-num-groups --n-group", "n_group (expert groups of the sigmoid router, or of DeepSeek-V2's "
         "softmax router with MLA)",
         SIGMOID + ("--moe-router-num-groups", "2", "--moe-router-group-topk", "1")),
    arch("--moe-router-group-topk --topk-group", "topk_group", SIGMOID + ("--n-group", "2", "--topk-group", "1")),
    arch("--moe-router-topk-scaling-factor --routed-scaling-factor", "routed_scaling_factor",
         SIGMOID + ("--moe-router-topk-scaling-factor", "2.5")),
    arch("--seq-aux", "model.moe_seq_aux_loss_coeff = --moe-aux-loss-coeff (MindSpeed, with load-balancing type "
         "none or noaux_tc)", SIGMOID + ("--moe-router-load-balancing-type", "noaux_tc", "--moe-aux-loss-coeff",
                                         "0.0001", "--seq-aux")),
    arch("--moe-z-loss-coeff", "model.moe_z_loss_coeff", MOE + ("--moe-z-loss-coeff", "0.001")),
    arch("--moe-device-level-aux-loss-coeff", "model.moe_device_level_aux_loss_coeff (DeepSeek-V2's group-limited "
         "router; per sample with --seq-aux)", DSV2_GROUPED + ("--moe-device-level-aux-loss-coeff", "0.05")),
    arch("--moe-comm-aux-loss-coeff", "model.moe_comm_aux_loss_coeff (DeepSeek-V2's group-limited router; per "
         "sample with --seq-aux)", DSV2_GROUPED + ("--moe-comm-aux-loss-coeff", "0.02")),
    plain("--moe-expert-capacity-factor", "moe_expert_capacity_factor",
          note="Megatron's token dropping beyond each expert's capacity", example=MOE + (
              "--moe-expert-capacity-factor", "1.0")),
    plain("--moe-token-drop-policy", "moe_token_drop_policy", example=MOE + (
        "--moe-expert-capacity-factor", "1.0", "--moe-token-drop-policy", "position")),
    switch("--moe-router-force-load-balancing", "moe_router_force_load_balancing",
           note="for benchmarking only: random router logits spread the tokens near-uniformly over the experts; "
           "training quality is meaningless", example=MOE + ("--moe-router-force-load-balancing",)),
    arch("--moe-shared-expert-intermediate-size", "n_shared_experts × moe_intermediate_size (GLM-4.5, DeepSeek-V3) "
         "or shared_expert_intermediate_size (Qwen2-MoE)", SIGMOID + ("--moe-ffn-hidden-size", "16",
                                                                       "--moe-shared-expert-intermediate-size", "32")),
    arch("--n-shared-experts", "n_shared_experts (MindSpeed: shared width N × --moe-ffn-hidden-size)",
         SIGMOID + ("--moe-ffn-hidden-size", "16", "--n-shared-experts", "2")),
    arch("--moe-shared-expert-gate --shared-expert-gate", "the gated shared expert of the Qwen2-MoE family",
         MOE + ("--moe-ffn-hidden-size", "16", "--moe-shared-expert-intermediate-size", "32",
                "--moe-shared-expert-gate")),
    arch("--first-k-dense-replace", "mlp_only_layers / first_k_dense_replace (the first k layers are dense; -1 or 0: "
         "none)", QWEN3_MOE + ("--first-k-dense-replace", "1")),
    arch("--moe-layer-freq", "mlp_only_layers / first_k_dense_replace (every N-th layer has experts, or a list such "
         "as [0]*3+[1]*58; -1, 0 or 1: every layer)", QWEN3_MOE + ("--moe-layer-freq", "2")),
    arch("--noop-layers", "num_hidden_layers = --num-layers minus these identity layers (MindSpeed-LLM's pipeline "
                          "padding)", ROPE + ("--num-layers", "4", "--noop-layers", "3")),
    arch("--no-bias-gelu-fusion", "exact GeLU for GPT-2 (activation_function) and GPT-NeoX (hidden_act); without "
         "it Megatron's fused bias-GeLU kernel computes the tanh approximation (gelu_pytorch_tanh)",
         ("--no-bias-gelu-fusion",)),
    arch("--bias-gelu-fusion", "activation_function gelu_pytorch_tanh for GPT-2: Megatron's fused bias-GeLU kernel is "
         "the tanh approximation (the default)"),
    # --- Multi-Latent Attention (arch/attention.py) ---
    arch("--multi-latent-attention --multi-head-latent-attention", "the DeepSeek-V3 family's latent attention "
         "(DeepSeek-V2's with a softmax router)", MLA),
    arch("--q-lora-rank", "q_lora_rank", MLA + ("--q-lora-rank", "32")),
    arch("--kv-lora-rank", "kv_lora_rank", MLA + ("--kv-lora-rank", "24")),
    arch("--qk-head-dim --qk-nope-head-dim", "qk_nope_head_dim", MLA + ("--qk-head-dim", "8")),
    arch("--qk-pos-emb-head-dim --qk-rope-head-dim", "qk_rope_head_dim", MLA + ("--qk-pos-emb-head-dim", "16")),
    arch("--v-head-dim", "v_head_dim", MLA + ("--v-head-dim", "8")),
    arch("--rope-type", "MLA rotary embedding: yarn (the default, with --rotary-scaling-factor) or rope",
         MLA + ("--rope-type", "rope")),
    arch("--rotary-scaling-factor", "rope_parameters yarn factor (MLA)", MLA + ("--rotary-scaling-factor", "40")),
    arch("--mscale", "rope_parameters yarn mscale (MLA)", MLA + ("--rotary-scaling-factor", "40", "--mscale", "0.5")),
    arch("--mscale-all-dim", "rope_parameters yarn mscale_all_dim (MLA)",
         MLA + ("--rotary-scaling-factor", "40", "--mscale-all-dim", "1.0")),
    # --- DeepSeek Sparse Attention, MindSpeed-LLM's indexer (arch/dsa.py) ---
    arch("--enable-dsa-indexer", "the GLM-MoE-DSA family (glm_moe_dsa): MLA with a lightning indexer choosing each "
         "query's keys; model_id deepseek_v32 trains the indexer", DSA),
    arch("--index-n-heads", "index_n_heads (the indexer's query heads; MindSpeed's default 64)",
         DSA + ("--index-n-heads", "4")),
    arch("--index-head-dim", "index_head_dim (a power of two; MindSpeed's default 128)",
         DSA + ("--index-head-dim", "32")),
    arch("--index-topk", "index_topk (keys each query attends to; MindSpeed's default 2048)",
         DSA + ("--index-topk", "8")),
    arch("--indexer-loss-coeff", "model.dsa_indexer_loss_coeff (the indexer's KL loss; MindSpeed's default 1.0)",
         DSA + ("--indexer-loss-coeff", "0.5")),
    # --- hybrid Mamba models, the nemotron_h family (arch/hybrid.py) ---
    arch("--hybrid-layer-pattern --hybrid-override-pattern", "layers_block_type of the nemotron_h family (M Mamba2, "
         "* attention, - MLP; its length sets num_hidden_layers)", HYBRID),
    arch("--hybrid-attention-ratio", "layers_block_type: attention layers placed by ratio as megatron-core's "
         "allocate_layers", HYBRID[2:] + ("--hybrid-attention-ratio", "0.5")),
    arch("--hybrid-mlp-ratio", "layers_block_type: MLP layers placed by ratio as megatron-core's allocate_layers",
         HYBRID[2:] + ("--hybrid-mlp-ratio", "0.5")),
    arch("--is-hybrid-model", "the nemotron_h family; without a pattern or ratios every layer is Mamba2",
         HYBRID[2:] + ("--is-hybrid-model",)),
    arch("--mamba-state-dim", "ssm_state_size", HYBRID + ("--mamba-state-dim", "8")),
    arch("--mamba-head-dim", "mamba_head_dim", HYBRID + ("--mamba-head-dim", "32")),
    arch("--mamba-num-groups", "n_groups", HYBRID + ("--mamba-num-groups", "4")),
    arch("--mamba-num-heads", "mamba_num_heads (unset: expand × hidden / head dim)",
         HYBRID + ("--mamba-num-heads", "4")),
    # MindSpeed's --mamba-expand, --mamba-d-conv (alias of --linear-conv-kernel-dim) and --mamba-chunk-size have their
    # rows with Qwen3-Next's below; arch/hybrid.py reads them for nemotron_h too
    arch("--squared-relu", "mlp_hidden_act relu2 (nemotron_h's ungated MLP)", HYBRID + ("--squared-relu",)),
    # --- RoPE scaling for long context (arch/rope.py) ---
    arch("--use-rope-scaling", "rope_parameters llama3 (Megatron: low 1, high 4, original 8192)",
         ROPE + ("--use-rope-scaling",)),
    arch("--rope-scaling-factor", "rope_parameters factor",
         ROPE + ("--use-rope-scaling", "--rope-scaling-factor", "32")),
    arch("--rope-scaling-type", "rope_parameters rope_type (llama3, yarn, longrope)", ROPE + YARN),
    arch("--long-factor", "rope_parameters long_factor (longrope: --seq-length beyond the original context)",
         ROPE + LONGROPE),
    arch("--short-factor", "rope_parameters short_factor (longrope)", ROPE + LONGROPE),
    arch("--long-mscale", "rope_parameters attention_factor (longrope, when --seq-length is beyond the original "
         "context)", ROPE + LONGROPE + ("--long-mscale", "1.2", "--short-mscale", "1.1")),
    arch("--short-mscale", "rope_parameters attention_factor (longrope, within the original context)",
         ROPE + LONGROPE + ("--long-mscale", "1.3", "--short-mscale", "1.3")),
    arch("--rotary-seq-len-interpolation-factor --rotary-scale-factor", "rope_parameters rope_type linear with its "
         "factor (1: none; Pai-Megatron-Patch's --rotary-scale-factor divides the positions the same way)",
         ROPE + ("--rotary-seq-len-interpolation-factor", "4")),
    arch("--low-freq-factor --rope-low-freq-factor", "rope_parameters low_freq_factor (llama3)", ROPE + LLAMA3),
    arch("--high-freq-factor --rope-high-freq-factor", "rope_parameters high_freq_factor (llama3)",
         ROPE + LLAMA3[:-4] + ("--high-freq-factor", "2", "--original-max-position-embeddings", "8192")),
    arch("--original-max-position-embeddings --rope-original-max-positional-embeddings",
         "rope_parameters original_max_position_embeddings",
         ROPE + LLAMA3[:-2] + ("--original-max-position-embeddings", "4096")),
    arch("--rope-factor", "rope_parameters factor of Llama-3.1 scaling, with --rope-low-freq-factor (a Megatron-LM "
         "fork's spelling, e.g. okoge-kaz's); alone it is MindSpeed's DeepSeek-V4 setting, refused",
         ROPE + ("--rope-factor", "8", "--rope-low-freq-factor", "1", "--rope-high-freq-factor", "4",
                 "--rope-original-max-positional-embeddings", "8192")),
    arch("--rope-scaling-original-max-position-embeddings", "rope_parameters original_max_position_embeddings",
         ROPE + YARN),
    arch("--rope-scaling-beta-fast --beta-fast", "rope_parameters beta_fast (yarn)",
         ROPE + YARN + ("--rope-scaling-beta-fast", "16")),
    arch("--rope-scaling-beta-slow --beta-slow", "rope_parameters beta_slow (yarn)",
         ROPE + YARN + ("--rope-scaling-beta-slow", "2")),
    arch("--rope-scaling-mscale", "rope_parameters mscale (yarn)", ROPE + YARN + ("--rope-scaling-mscale", "0.707")),
    arch("--rope-scaling-mscale-all-dim", "rope_parameters mscale_all_dim (yarn)",
         ROPE + YARN + ("--rope-scaling-mscale-all-dim", "0.707")),
    # --- sliding windows (arch/attention.py) ---
    arch("--sliding-window", "sliding_window (Mistral family; W positions seen, the token's own included)",
         ROPE + ("--disable-bias-linear", "--sliding-window", "16")),
    arch("--window-size", "sliding_window = LEFT + 1 (Mistral family; Megatron's LEFT,0)",
         ROPE + ("--disable-bias-linear", "--window-size", "15,0")),
    # --- Qwen3-Next: Gated DeltaNet linear attention beside gated full attention (arch/linear_attention.py) ---
    arch("--full-attention-interval", "layer_types (MindSpeed's Qwen3-Next: full attention every N-th layer, Gated "
         "DeltaNet otherwise; model_type qwen3_next)", QWEN3_NEXT),
    arch("--experimental-attention-variant", "model_type qwen3_next (gated_delta_net / gdn: Gated DeltaNet layers; "
         "with --linear-attention-freq and --attention-output-gate)", GDN),
    arch("--linear-attention-freq", "layer_types (Megatron-LM: N = full attention every N-th layer, or a 0/1 list "
         "with 1 for linear attention)", GDN[:-1] + ("[1,0]",)),
    arch("--attention-output-gate", "Qwen3-Next's gated full attention (always gated in transformers' qwen3_next)",
         GDN),
    arch("--linear-conv-kernel-dim --mamba-d-conv", "linear_conv_kernel_dim",
         QWEN3_NEXT + ("--linear-conv-kernel-dim", "3")),
    arch("--linear-key-head-dim", "linear_key_head_dim", QWEN3_NEXT + ("--linear-key-head-dim", "8")),
    arch("--linear-value-head-dim", "linear_value_head_dim", QWEN3_NEXT + ("--linear-value-head-dim", "8")),
    arch("--linear-num-key-heads", "linear_num_key_heads", QWEN3_NEXT + ("--linear-num-key-heads", "4")),
    arch("--linear-num-value-heads", "linear_num_value_heads", QWEN3_NEXT + ("--linear-num-value-heads", "2")),
    arch("--mamba-expand", "Gated DeltaNet width factor: 1 only (MindSpeed's Qwen3-Next value; transformers' does "
         "not widen)",
         QWEN3_NEXT + ("--mamba-expand", "1")),
    # --- gpt-oss (arch/gpt_oss.py) ---
    arch("--quick-geglu", "the gpt_oss family: quick-GeLU gated experts (with the flags below)", GPT_OSS),
    arch("--glu-linear-offset", "the gpt_oss family's (up + 1): 1.0 with --quick-geglu", GPT_OSS),
    arch("--activation-func-clamp-value", "swiglu_limit (gpt_oss)",
         GPT_OSS + ("--activation-func-clamp-value", "5.0")),
    arch("--softmax-type", "the gpt_oss family's attention sinks: learnable with --quick-geglu", GPT_OSS),
    arch("--window-attn-skip-freq", "layer_types (gpt_oss: layer n, 1-based, keeps the --window-size window unless "
         "n % N == 0, or where a list of 0/1 says 1)",
         GPT_OSS + ("--num-layers", "4", "--window-size", "7,0", "--window-attn-skip-freq", "[1,0,0,1]")),
    # --- multi-token prediction (fsdp2_core/models/mtp.py) ---
    arch("--mtp-num-layers --num-nextn-predict-layers", "model.mtp_num_layers (DeepSeek-V3's layout; "
         "num_nextn_predict_layers)", ROPE + ("--disable-bias-linear", "--mtp-num-layers", "1")),
    arch("--mtp-loss-scaling-factor", "model.mtp_loss_scaling_factor",
         ROPE + ("--disable-bias-linear", "--mtp-num-layers", "1", "--mtp-loss-scaling-factor", "0.3")),
]
ARCH_FLAGS = tuple(flag for rule in MAPPED_RULES if rule.group == "architecture" for flag in rule.flags)
