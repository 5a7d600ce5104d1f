#!/usr/bin/env python
"""Train from a YAML config in the MindSpeed-LLM FSDP2 layout.

    torchrun --nproc-per-node 8 train_fsdp2.py CONFIG.yaml [--section.field VALUE ...]

Sections: model, data, parallel, training, optimization, profiling. `stage: pt` with
`data_manager_type: mg` trains on Megatron .bin/.idx data, the same path as pretrain_gpt.py;
`stage: sft` with `data_manager_type: lf` fine-tunes on LLaMA-Factory style instruction data.

SIGTERM and SIGINT (a scheduler's preemption, Ctrl-C) finish the current iteration, save a
checkpoint and exit 0 (training.exit_signal_handler is always on here; a repeated SIGTERM
never interrupts the save, a second Ctrl-C interrupts at once). Resume with
--training.resume_from_checkpoint latest. See docs/preemption.md.
"""
import sys

USAGE = __doc__


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0].startswith("--"):
        print(USAGE)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from fsdp2_core.config import ConfigError, load_config
    from fsdp2_core.rank_env import RankDiscoveryError, export_torchrun_variables
    try:
        export_torchrun_variables()  # ranks started by mpirun / srun instead of torchrun
        cfg = load_config(argv[0], argv[1:])
    except (ConfigError, RankDiscoveryError) as exc:
        from fsdp2_core.train.errors import refuse_to_start
        return refuse_to_start(f"train_fsdp2.py: error: {exc}")
    cfg.training.exit_signal_handler = True  # this entry always stops gracefully on SIGTERM / SIGINT
    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.train import run_training
    from fsdp2_core.train.errors import run_reporting_errors
    return run_reporting_errors("train_fsdp2.py", lambda: run_training(cfg, checkpoint=Checkpointer(cfg)))


if __name__ == "__main__":
    sys.exit(main())
