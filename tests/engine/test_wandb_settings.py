"""wandb run settings from the config reach wandb.init: project, run name, entity, directory, and a run id to resume."""
import sys
import types

from fsdp2_core.testing.tiny import tiny_config
from fsdp2_core.train.metrics import MetricsSink


def test_wandb_init_gets_the_configured_run(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(kw) or types.SimpleNamespace(log=lambda *a, **k: None, finish=lambda: None)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = tiny_config(tmp_path, wandb_project="proj", wandb_exp_name="run-7", wandb_entity="team",
                      wandb_save_dir=str(tmp_path / "wb"), wandb_id="abc123", wandb_group="sweep-1")
    sink = MetricsSink(cfg.training, 0)
    sink.close()
    (kw,) = calls
    assert {k: kw[k] for k in ("project", "name", "entity", "dir", "id", "resume", "group")} == {
        "project": "proj", "name": "run-7", "entity": "team", "dir": str(tmp_path / "wb"), "id": "abc123",
        "resume": "allow", "group": "sweep-1"}
