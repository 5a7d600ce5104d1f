"""The Megatron-style entry points (`pretrain_gpt.py`): flags in, training or `--print-config` out."""
import os
import sys
from typing import List, Optional

from fsdp2_core.config import ConfigError, dump_yaml
from fsdp2_core.rank_env import RankDiscoveryError, export_torchrun_variables

from .architecture import ArchitectureError
from .translate import translate
from .unknown_flags import take_option, vouch_from

USAGE = """usage: {entry} [CONFIG.yaml] [Megatron flags | FSDP2 names ...] [--print-config]

Megatron-LM / MindSpeed-LLM flags and FSDP2 config names (--tp_size, --training.lr, ...) may be mixed.
--print-config   print the resolved canonical YAML (stdout) and the per-flag report (stderr), then exit
--list-flags     see `python tools/convert_args.py --list-flags`
--allow-unknown-flags[=--foo,--bar]
                 ignore the unknown flags you vouch for (all, or those named), each listed as a WARNING;
                 or set FSDP2_ALLOW_UNKNOWN_FLAGS=all|--foo,--bar in the launch script's environment
"""


def holds_our_checkpoints(path: str) -> bool:
    """A --save directory of this engine: Megatron's layout plus our checkpoint_info.json in each iter_* directory."""
    from fsdp2_core.checkpoint.layout import INFO, TRACKER
    if not os.path.isfile(os.path.join(path, TRACKER)):
        return False
    return any(os.path.isfile(os.path.join(path, name, INFO)) for name in os.listdir(path) if name.startswith("iter_"))


def load_from_our_checkpoint(cfg) -> Optional[str]:
    """`--load DIR` (not equal to --save) naming one of our checkpoint directories resumes from it, as Megatron's
    --load does (with --finetune: weights only, counters reset); the model is built from the architecture flags."""
    path = cfg.model.model_name_or_path
    if not path or not os.path.isdir(path) or not holds_our_checkpoints(path):
        return None
    if not cfg.model.architecture:
        raise ConfigError(f"--load {path} holds checkpoints of this engine: give the architecture flags (--num-layers, "
                          "--hidden-size, ...) they were trained with")
    cfg.training.resume_from_checkpoint = path
    cfg.model.model_name_or_path = None
    cfg.model.train_from_scratch = True
    return f"--load {path} holds checkpoints of this engine: resuming from its latest" + (
        " (weights only: --finetune)" if cfg.training.finetune else "") + f"; saving to {cfg.training.output_dir}"


# Hyperparameters that may differ between the flags and a Megatron checkpoint's saved args (training settings,
# not the model's shape), as Megatron's own check_checkpoint_args lets them.
_NOT_SHAPE = {"attention_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range",
              "router_aux_loss_coef", "output_router_logits", "vocab_size", "max_position_embeddings"}


def load_from_megatron_checkpoint(cfg) -> Optional[str]:
    """`--load` naming a Megatron-LM checkpoint continues that run: the architecture comes from the args it saved
    (architecture flags given too must agree with them), the weights, iteration, consumed samples and LR schedule
    from the checkpoint (fsdp2_core.checkpoint.megatron.resume)."""
    from fsdp2_core.checkpoint.layout import CheckpointError
    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    from fsdp2_core.checkpoint.megatron.detect import locate

    from .checkpoint_args import arch_for  # the reverse conversion it uses loads the engine's data package

    path = cfg.model.model_name_or_path
    try:
        located = locate(path) if path else None
        if located is None:
            return None
        ckpt = open_checkpoint(path, trust=cfg.training.trust_megatron_pickle)
        saved, notes = arch_for(ckpt)
    except (CheckpointError, ArchitectureError) as exc:
        raise ConfigError(f"--load {path}: {exc}") from None
    flags = cfg.model.architecture
    if flags:
        diffs = [f"{k}: flags {flags[k]!r}, checkpoint {saved.get(k)!r}" for k in sorted(set(flags) | set(saved))
                 if k not in _NOT_SHAPE and flags.get(k) != saved.get(k)]
        if diffs:
            raise ConfigError(f"--load {path}: the architecture flags contradict the args the Megatron checkpoint "
                              f"saved ({'; '.join(diffs)}); drop the architecture flags or give the checkpoint's")
    arch = dict(flags, vocab_size=saved["vocab_size"]) if flags else saved
    cfg.model.architecture = arch
    cfg.model.model_name_or_path = None
    cfg.model.train_from_scratch = True
    cfg.training.resume_from_checkpoint = located.path
    what = "weights only: --finetune" if cfg.training.finetune else f"iteration {ckpt.iteration}, " \
        f"consumed samples {ckpt.consumed_train_samples}"
    return "; ".join([f"--load {path} is a Megatron-LM {ckpt.format} checkpoint of a {saved['model_type']} model: "
                      f"continuing it ({what}); saving to {cfg.training.output_dir}"] + notes)


def check_model_path(path: str) -> None:
    """--load must be a Hugging Face model directory here; say what to do when it holds a Megatron checkpoint."""
    if not os.path.isdir(path):
        raise ConfigError(f"--load {path}: no such directory; point --load at a Hugging Face model directory, "
                          "or drop it to train from scratch with the architecture flags")
    if os.path.isfile(os.path.join(path, "config.json")):
        return
    megatron_marks = ("latest_checkpointed_iteration.txt",)
    if any(os.path.exists(os.path.join(path, m)) for m in megatron_marks) or any(
            name.startswith(("iter_", "mp_rank_")) for name in os.listdir(path)):
        raise ConfigError(
            f"--load {path} looks like a checkpoint directory but is neither a Megatron-LM checkpoint (a tracker "
            "naming an iter_XXXXXXX directory with mp_rank_* or torch_dist files) nor a Hugging Face model (no "
            "config.json); name the iter_XXXXXXX directory itself, or set --load equal to --save to resume one of "
            "our own checkpoints")
    raise ConfigError(f"--load {path} has no config.json: it is not a Hugging Face model directory")


def main(argv: Optional[List[str]] = None, entry: str = "pretrain_gpt.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE.format(entry=entry))
        return 0
    print_config = "--print-config" in argv
    argv = [a for a in argv if a != "--print-config"]
    argv, allowed = take_option(argv)
    try:
        vouch = vouch_from(allowed)
    except ValueError as exc:
        print(f"{entry}: {exc}", file=sys.stderr)
        return 2
    try:  # ranks started by mpirun / srun: their world size decides the batch arithmetic below
        export_torchrun_variables()
    except RankDiscoveryError as exc:
        from fsdp2_core.train.errors import refuse_to_start
        return refuse_to_start(f"{entry}: {exc}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    result = translate(argv, world_size=world_size, entry=entry, vouch=vouch)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if not result.ok:  # every rank found the same problems: one copy, from rank 0
        from fsdp2_core.train.errors import refuse_to_start
        return refuse_to_start(result.report() + f"\n\n{entry}: refusing to start:\n  - "
                               + "\n  - ".join(result.problems()))
    if rank0:
        print(result.report(), file=sys.stderr)
    if print_config:
        sys.stdout.write(dump_yaml(result.config))
        return 0
    cfg = result.config
    # imported late: --print-config touches no engine code
    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.train import run_training
    from fsdp2_core.train.errors import run_reporting_errors

    def start() -> None:
        note = load_from_our_checkpoint(cfg) or load_from_megatron_checkpoint(cfg)
        if note and rank0:
            print(f"note: {note}", file=sys.stderr)
        if cfg.model.model_name_or_path:
            check_model_path(cfg.model.model_name_or_path)
        run_training(cfg, checkpoint=Checkpointer(cfg))
    return run_reporting_errors(entry, start)  # a ConfigError raised on the ranks: one message, exit 2
