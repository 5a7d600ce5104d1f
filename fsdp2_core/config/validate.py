"""The rules of the parameter reference, checked once on a complete config.

Every broken rule is collected as (field, text), so one error lists them all and a front end
can name the flag or key that set each field (megatron_compat's report does). Single-field
ranges are the table `RANGES`; rules that relate several fields follow it.
"""
import math
from typing import Dict, List, NamedTuple, Optional, Tuple

from .architecture_rules import architecture_problems
from .arguments import ROUTER_FIELDS, TrainConfig
from .batch_schedule import ConstantBatch, build_batch_schedule, has_batch_schedule
from .schema import FIELD_INDEX, ConfigError, field_section

Problem = Tuple[Optional[str], str]
MAX_SEED = 2 ** 32 - 1  # numpy's generators, seeded with the run's seed as Megatron does, take 0 .. 2**32 - 1


class Range(NamedTuple):
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False    # low itself is refused
    high_open: bool = False   # high itself is refused
    why: str = ""

    def holds(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'<' if self.high_open else '<='} {high}"


def _number(value) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


AT_LEAST_1, AT_LEAST_0, POSITIVE = Range(1), Range(0), Range(0, low_open=True)
PROBABILITY = Range(0, 1, why="a probability")
# Single-field ranges; a None value (an unset optional field) is not checked. Every float field must
# also be finite (no nan / inf), whether listed here or not.
RANGES: Dict[str, Range] = {
    # model
    "quant_block_size": AT_LEAST_1, "vocab_size": Range(1, why="the tokenizer's vocabulary size"),
    "make_vocab_size_divisible_by": AT_LEAST_1, "padded_vocab_size": AT_LEAST_1, "lora_r": AT_LEAST_0,
    "lora_alpha": POSITIVE, "lora_dropout": Range(0, 1, high_open=True), "fp8_amax_history_len": AT_LEAST_1,
    # data
    "cutoff_len": AT_LEAST_1, "buffer_size": AT_LEAST_1, "preprocessing_batch_size": AT_LEAST_1,
    "preprocessing_num_workers": AT_LEAST_1, "max_samples": AT_LEAST_1, "eval_num_beams": AT_LEAST_1,
    "val_size": AT_LEAST_0, "fim_rate": PROBABILITY, "fim_spm_rate": PROBABILITY, "fim_fragment_rate": PROBABILITY,
    # parallel
    "tp_size": AT_LEAST_1, "ep_size": AT_LEAST_1, "ep_fsdp_size": AT_LEAST_1, "cp_size": AT_LEAST_1,
    "fsdp_size": Range(1, why="or unset to shard over every data-parallel rank"),
    "distributed_timeout_minutes": Range(0, low_open=True, why="or unset for PyTorch's default"),
    "num_to_forward_prefetch": AT_LEAST_0, "num_to_backward_prefetch": AT_LEAST_0,
    # training
    "lr": AT_LEAST_0, "min_lr": AT_LEAST_0, "weight_decay": AT_LEAST_0, "lr_warmup_init": AT_LEAST_0,
    "start_weight_decay": AT_LEAST_0, "end_weight_decay": AT_LEAST_0,
    "adam_beta1": Range(0, 1, high_open=True, why="Adam's moment decay"),
    "adam_beta2": Range(0, 1, high_open=True, why="Adam's moment decay"),
    "adam_epsilon": AT_LEAST_0, "max_grad_norm": Range(0, why="0 disables clipping"),
    "warmup_ratio": Range(0, 1), "num_train_epochs": AT_LEAST_0,
    "gradient_accumulation_steps": AT_LEAST_1, "per_device_train_batch_size": AT_LEAST_1,
    "global_batch_size": AT_LEAST_1, "train_samples": AT_LEAST_1, "train_tokens": AT_LEAST_1,
    "decoupled_lr": AT_LEAST_0,
    "decoupled_min_lr": AT_LEAST_0, "seed": Range(0, MAX_SEED, why="the range numpy's generators accept"),
    "save_steps": Range(0, why="0 saves only at the end"), "save_total_limit": Range(1, why="or null to keep all"),
    "save_retain_interval": Range(1, why="or null to keep all"),
    "save_epochs": AT_LEAST_0, "logging_steps": Range(1, why="log every N iterations"),
    "chunk_loss_size": AT_LEAST_1, "dataloader_num_workers": Range(0, why="0 reads in the training process"),
    "dataloader_prefetch_factor": AT_LEAST_1, "gdn_chunk_size": AT_LEAST_1,
    "lr_warmup_steps": AT_LEAST_0, "lr_decay_steps": POSITIVE, "lr_wsd_decay_steps": AT_LEAST_0,
    "eval_interval": Range(1, why="or null for no periodic evaluation"),
    "eval_iters": Range(0, why="0 evaluates nothing"), "exit_interval": AT_LEAST_1,
    "exit_duration_in_mins": POSITIVE, "max_skipped_iterations": AT_LEAST_0,
    "z_loss_coeff": Range(0, why="0 turns the z-loss off"),
    "loss_scale": Range(0, low_open=True, why="or unset for dynamic fp16 scaling"), "initial_loss_scale": POSITIVE,
    "min_loss_scale": POSITIVE, "loss_scale_window": AT_LEAST_1, "hysteresis": AT_LEAST_1,
    # MoE routers and multi-token prediction
    "moe_seq_aux_loss_coeff": AT_LEAST_0, "moe_z_loss_coeff": AT_LEAST_0,
    "moe_device_level_aux_loss_coeff": AT_LEAST_0, "moe_comm_aux_loss_coeff": AT_LEAST_0,
    "moe_router_bias_update_rate": AT_LEAST_0,
    "dsa_indexer_loss_coeff": AT_LEAST_0,
    "moe_expert_capacity_factor": Range(0, low_open=True, why="or unset it to route every token (dropless)"),
    "mtp_loss_scaling_factor": AT_LEAST_0, "mtp_num_layers": Range(0, why="0: no multi-token prediction"),
    # profiling
    "profile_step_start": AT_LEAST_0,
}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Normalise implied settings, then raise ConfigError listing every broken rule."""
    if cfg.data.neat_packing:
        cfg.data.packing = True  # neat_packing implies packing
    problems: List[Problem] = []
    for check in (_check_ranges, _check_essentials, _check_data_rules, _check_parallel, _check_batch_schedule,
                  _check_training, _check_decoupled_lr, _check_loss_scale, _check_profiling, _check_architecture,
                  _check_moe_family):
        problems.extend(check(cfg))
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(text for _, text in problems), problems)
    return cfg


def _check_ranges(cfg) -> List[Problem]:
    problems = []
    for name in FIELD_INDEX:
        section = field_section(name)
        value = getattr(getattr(cfg, section), name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((name, f"{section}.{name} must be a finite number, got {value}"))
            continue
        rule = RANGES.get(name)
        if rule is not None and not rule.holds(value):
            why = f" ({rule.why})" if rule.why else ""
            problems.append((name, f"{section}.{name} must be {rule.describe()}{why}, got {value}"))
    return problems


def _check_essentials(cfg) -> List[Problem]:
    problems = []
    m = cfg.model
    if not m.model_name_or_path and not m.architecture:
        problems.append((
            "model_name_or_path",
            "model: neither model_name_or_path nor an architecture is given; set model.model_name_or_path to a "
            "Hugging Face model directory, or give the Megatron architecture flags (--num-layers, --hidden-size, "
            "--num-attention-heads, ...)"))
    if not cfg.training.output_dir:
        problems.append(("output_dir", "training.output_dir is required: set output_dir (Megatron --save) to where "
                                       "checkpoints and logs go"))
    return problems


def _check_data_rules(cfg) -> List[Problem]:
    d, problems = cfg.data, []
    if d.eval_dataset and d.val_size:
        problems.append(("val_size", f"data: eval_dataset ({d.eval_dataset!r}) and val_size ({d.val_size}) exclude "
                                     "each other; keep one"))
    if d.train_on_prompt and d.mask_history:
        problems.append(("mask_history", "data: train_on_prompt and mask_history exclude each other; keep one"))
    if d.streaming and d.max_samples is not None:
        problems.append(("max_samples", f"data: streaming and max_samples ({d.max_samples}) exclude each other; "
                                        "drop max_samples"))
    if d.streaming and d.val_size and float(d.val_size) != int(d.val_size):
        problems.append(("val_size", f"data: streaming needs an integer val_size (a sample count), got {d.val_size}"))
    if d.val_size and not d.dataset:
        problems.append(("val_size", "data: val_size needs a dataset to split"))
    try:
        weights = [float(x) for x in d.split.replace("/", ",").split(",")]
        if len(weights) > 3 or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError
    except ValueError:
        problems.append(("split", f"data: split {d.split!r} must be up to three non-negative weights like '969,30,1'"))
    if d.interleave_probs and d.mix_strategy == "concat":
        problems.append(("interleave_probs", "data: interleave_probs only applies with mix_strategy interleave_under "
                                             "or interleave_over"))
    return problems + _check_fim(d) + _check_weighted_groups(d)


def _check_weighted_groups(d) -> List[Problem]:
    """The forks' second data mode: weighted groups instead of dataset / split (their syntax is checked where the
    data is built, naming the flag)."""
    given = {s: (getattr(d, f"{s}_weighted_split_paths"), getattr(d, f"{s}_weighted_split_paths_path"))
             for s in ("train", "valid", "test")}
    if not any(a or b for a, b in given.values()):
        return []
    both = [s for s, (inline, path) in given.items() if inline and path]
    if both:
        return [(f"{both[0]}_weighted_split_paths", f"data: {both[0]}_weighted_split_paths and "
                                                    f"{both[0]}_weighted_split_paths_path both give the {both[0]} "
                                                    "groups; keep one")]
    if not any(given["train"]):
        return [("train_weighted_split_paths", "data: valid/test_weighted_split_paths need the training group "
                                               "train_weighted_split_paths (--train-weighted-split-paths), as in "
                                               "the forks")]
    if d.data_manager_type != "mg" or d.is_instruction_dataset:
        return [("train_weighted_split_paths", "data: weighted split groups are Megatron pretraining data; they "
                                               "need data_manager_type mg without is_instruction_dataset")]
    others = [name for name in ("dataset", "train_data_path", "valid_data_path", "test_data_path", "mock_data")
              if getattr(d, name)]
    if others:
        return [("train_weighted_split_paths", f"data: the weighted split groups and {', '.join(others)} are "
                                               "exclusive (the forks' two data modes); keep one")]
    return []


def _check_fim(d) -> List[Problem]:
    """FIM transforms Megatron pretraining samples only (Megatron-LM's GPTFIMDataset)."""
    if not d.fim_data or not d.fim_rate:
        return []
    problems = []
    if d.data_manager_type != "mg" or d.is_instruction_dataset:
        problems.append(("fim_data", "data: fim_data (--fim-data / --fim-rate) transforms Megatron pretraining "
                                     "samples; it needs data_manager_type mg without is_instruction_dataset"))
    if d.mock_data:
        problems.append(("fim_data", "data: fim_data (--fim-data / --fim-rate) needs real text, and Megatron-LM "
                                     "refuses it with --mock-data too: drop one of the two"))
    if d.fim_split_sample and d.fim_fragment_rate is None:
        problems.append(("fim_fragment_rate", f"data: fim_split_sample {d.fim_split_sample!r} (--fim-split-sample) "
                                              "needs fim_fragment_rate (--fim-fragment-rate), the FIM rate of each "
                                              "fragment; Megatron-LM has no default for it"))
    return problems


def _check_parallel(cfg) -> List[Problem]:
    p, problems = cfg.parallel, []
    if not p.fsdp_modules:
        problems.append(("fsdp_modules", "parallel.fsdp_modules must not be empty; the default is "
                                         "['model.layers.{*}', 'model.embed_tokens', 'lm_head']"))
    return problems


def _check_batch_schedule(cfg) -> List[Problem]:
    """Ramp-up or step schedule, and a run given in samples: max_steps = Megatron's update_train_iters."""
    t, problems = cfg.training, []
    if t.rampup_batch_size is not None and t.step_batch_size_schedule:
        return [("rampup_batch_size", "training: rampup_batch_size (--rampup-batch-size) and step_batch_size_schedule "
                                      "(--step-batch-size-schedule) exclude each other; keep one")]
    if t.rampup_batch_size is not None and len(t.rampup_batch_size) != 3:
        return [("rampup_batch_size", f"training.rampup_batch_size must be three integers [start batch, increment, "
                                      f"ramp-up samples], got {t.rampup_batch_size}")]
    if has_batch_schedule(t) and t.max_steps <= 0 and not t.train_samples:
        problems.append(("max_steps", "training: a batch-size ramp-up or step schedule needs the run's length in "
                                      "samples (train_samples, --train-samples) or iterations (max_steps, "
                                      "--train-iters); not epochs"))
    if (not has_batch_schedule(t) and t.train_samples is None) or (t.train_samples or 1) < 1:
        return problems  # a train_samples below 1 is the range check's
    if t.global_batch_size is None and not t.step_batch_size_schedule:
        return problems + [("global_batch_size", "training: train_samples and rampup_batch_size count samples per "
                                                 "global batch: set global_batch_size (--global-batch-size)")]
    if t.global_batch_size is not None and t.global_batch_size < 1:
        return problems  # the range check names it
    field = "step_batch_size_schedule" if t.step_batch_size_schedule else "rampup_batch_size"
    try:
        schedule = build_batch_schedule(t, t.global_batch_size, cfg.data.cutoff_len)
    except ConfigError as exc:
        return problems + [(field, str(exc))]
    if t.train_samples is not None:
        problems.extend(_derive_max_steps(t, schedule))
    return problems


def _derive_max_steps(t, schedule) -> List[Problem]:
    derived = schedule.train_iters(t.train_samples)
    if t.max_steps > 0 and t.max_steps != derived:
        how = "" if isinstance(schedule, ConstantBatch) else " with its batch schedule"
        return [("max_steps", f"training: max_steps {t.max_steps} disagrees with train_samples {t.train_samples}, "
                              f"which is {derived} iterations{how}; max_steps is derived from train_samples: remove "
                              "max_steps")]
    if derived < 1:
        return [("train_samples", f"training.train_samples {t.train_samples} is less than one global batch "
                                  f"({schedule.global_batch(0)})")]
    t.max_steps = derived
    return []


def _check_decoupled_lr(cfg) -> List[Problem]:
    t = cfg.training
    if t.decoupled_min_lr is not None and t.decoupled_lr is None:
        return [("decoupled_min_lr", f"training.decoupled_min_lr ({t.decoupled_min_lr}) only applies with "
                                     "decoupled_lr; set decoupled_lr (--decoupled-lr) or remove it")]
    low = t.min_lr if t.decoupled_min_lr is None else t.decoupled_min_lr
    if t.decoupled_lr is not None and low > t.decoupled_lr:
        which = "min_lr" if t.decoupled_min_lr is None else "decoupled_min_lr"
        return [(which, f"training: {which} ({low}) is above decoupled_lr ({t.decoupled_lr}); the embedding and "
                        "output layer's learning rate would grow while it decays")]
    return []


def _check_training(cfg) -> List[Problem]:
    t, problems = cfg.training, []
    if t.max_steps <= 0 and t.num_train_epochs <= 0:
        problems.append(("max_steps", "training: set max_steps > 0 (Megatron --train-iters) or num_train_epochs > 0"))
    if t.min_lr > t.lr:
        problems.append(("min_lr", f"training: min_lr ({t.min_lr}) is above lr ({t.lr})"))
    if t.weight_decay_incr_style != "constant" and (t.start_weight_decay is None or t.end_weight_decay is None):
        problems.append(("weight_decay_incr_style", "training: weight_decay_incr_style other than constant needs "
                                                    "start_weight_decay and end_weight_decay"))
    if t.finetune and t.resume_from_checkpoint is None and not cfg.model.model_name_or_path:
        problems.append(("finetune", "training.finetune needs a checkpoint to load: set resume_from_checkpoint or "
                                     "model_name_or_path (--load)"))
    if t.save_retain_interval and t.save_steps > 0 and t.save_retain_interval % t.save_steps:
        problems.append(("save_retain_interval", f"training: save_retain_interval ({t.save_retain_interval}) must be "
                                                 f"a multiple of save_steps ({t.save_steps}) (Megatron "
                                                 "--save-retain-interval of --save-interval), or no saved step is "
                                                 "ever retained"))
    return problems


def _check_loss_scale(cfg) -> List[Problem]:
    t = cfg.training
    if t.min_loss_scale > t.initial_loss_scale:
        return [("min_loss_scale", f"training: min_loss_scale ({t.min_loss_scale}) is above initial_loss_scale "
                                   f"({t.initial_loss_scale}); dynamic fp16 scaling starts at the initial scale and "
                                   "never goes below the minimum")]
    return []


def _check_profiling(cfg) -> List[Problem]:
    p, problems = cfg.profiling, []
    if p.profile_step_end != -1 and p.profile_step_end <= p.profile_step_start:
        problems.append(("profile_step_end", f"profiling.profile_step_end ({p.profile_step_end}) must be -1 or above "
                                             f"profile_step_start ({p.profile_step_start})"))
    return problems


def _check_architecture(cfg) -> List[Problem]:
    arch = cfg.model.architecture
    if not arch or cfg.model.model_name_or_path:  # a model directory's config.json is checked when it is read
        return []
    return architecture_problems(arch, cfg.data.cutoff_len)


def _check_moe_family(cfg) -> List[Problem]:
    m = cfg.model
    if m.model_id == "deepseek_v32" and cfg.parallel.cp_size > 1:
        return [("cp_size", f"cp_size {cfg.parallel.cp_size} with sparse attention (model_id deepseek_v32, DSA "
                            "indexer): the indexer picks each query's keys from the whole sequence, which context "
                            "parallelism splits; set cp_size 1 (--context-parallel-size 1)")]
    if m.dsa_indexer_loss_coeff and m.model_id != "deepseek_v32":
        return [("dsa_indexer_loss_coeff", f"model.dsa_indexer_loss_coeff {m.dsa_indexer_loss_coeff} trains the "
                 "sparse-attention indexer in the engine's forward: set model.model_id deepseek_v32")]
    if m.mtp_num_layers and cfg.parallel.tp_size > 1 and cfg.parallel.sequence_parallel:
        return [("mtp_num_layers", f"model.mtp_num_layers {m.mtp_num_layers} with tensor parallelism: the MTP layers "
                                   "take the whole sequence, which sequence parallelism splits; set "
                                   "parallel.sequence_parallel false (FSDP2 key sequence_parallel: false)")]
    wants_family = [name for name in ROUTER_FIELDS if getattr(m, name)]
    if not wants_family or m.model_id:
        return []
    return [(wants_family[0], f"model.{', model.'.join(wants_family)} need the engine's MoE forward: set "
                              "model.model_id (deepseek_v3 for DeepSeek-V3 / GLM-4.5 MoE, deepseek_v2, qwen2_moe, "
                              "qwen3_moe for Qwen3-MoE / Mixtral, gpt_oss)")]
