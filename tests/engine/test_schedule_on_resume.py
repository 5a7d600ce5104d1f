"""On resume the LR/WD schedule's settings come from the run's own config (the command line); only its position
(samples seen) comes from the checkpoint. Megatron calls this --override-opt_param-scheduler."""
from fsdp2_core.testing.tiny import tiny_config
from fsdp2_core.train.lr_schedule import build_schedule


def test_resumed_schedule_keeps_the_position_and_takes_the_new_settings(tmp_path):
    old = build_schedule(tiny_config(tmp_path, lr=1e-3, min_lr=1e-4, lr_scheduler_type="cosine").training, 100, 8)
    old.num_steps = 40 * 8  # 40 iterations of global batch 8 done
    saved = old.state_dict()
    new_cfg = tiny_config(tmp_path, lr=5e-4, min_lr=0.0, lr_scheduler_type="linear").training
    new = build_schedule(new_cfg, 100, 8)
    new.load_state_dict(saved)
    fresh = build_schedule(new_cfg, 100, 8)
    fresh.num_steps = 40 * 8
    assert new.num_steps == old.num_steps and new.lr() == fresh.lr() != old.lr()
