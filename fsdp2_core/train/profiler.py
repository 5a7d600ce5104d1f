"""torch.profiler (torch_npu.profiler on Ascend) driven by the profiling section.

Steps are counted as Megatron does: the 0-based iteration before it runs; profiling
covers [profile_step_start, profile_step_end), -1 meaning to the end. Levels on
CUDA/CPU: level_none = activities only, level0 = + shapes if asked, level1 = + shapes,
level2 = + shapes, stacks and memory. On NPU the level goes to torch_npu's own config.
Traces land under profile_save_path as rank{R}_steps{S}-{E}.json (text: plus a .txt table).
"""
import logging
import os

log = logging.getLogger(__name__)


class StepProfiler:
    def __init__(self, p, rank: int, device):
        self.p, self.rank, self.device = p, rank, device
        self.enabled = p.profile and (-1 in p.profile_ranks or rank in p.profile_ranks)
        self.prof = None
        self.start = None

    def step_begin(self, iteration: int) -> None:
        if self.enabled and self.prof is None and iteration == self.p.profile_step_start:
            self.prof = self._make()
            self.prof.__enter__()
            self.start = iteration

    def step_end(self, iteration: int, last: bool = False) -> None:
        """`iteration` is the 0-based index of the step just run."""
        if self.prof is not None and (iteration + 1 == self.p.profile_step_end or last):
            self.stop(iteration + 1)

    def stop(self, end: int) -> None:
        if self.prof is None:
            return
        self.prof.__exit__(None, None, None)
        if self.device.type != "npu":  # torch_npu writes through its own trace handler
            os.makedirs(self.p.profile_save_path, exist_ok=True)
            stem = os.path.join(self.p.profile_save_path, f"rank{self.rank}_steps{self.start}-{end}")
            self.prof.export_chrome_trace(stem + ".json")
            if self.p.profile_export_type == "text":
                with open(stem + ".txt", "w", encoding="utf-8") as fh:
                    fh.write(self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=50))
            log.info("profile written to %s.json", stem)
        self.prof = None

    def _make(self):
        p, mod = self.p, self.device.profiler_module()
        activities = [mod.ProfilerActivity.CPU] if (p.profile_with_cpu or self.device.type == "cpu") else []
        if self.device.type == "cuda":
            activities.append(mod.ProfilerActivity.CUDA)
        elif self.device.type == "npu":
            activities.append(mod.ProfilerActivity.NPU)
        shapes = p.profile_record_shapes or p.profile_level in ("level1", "level2")
        stack = p.profile_with_stack or p.profile_level == "level2"
        memory = p.profile_with_memory or p.profile_level == "level2"
        kwargs = dict(activities=activities, record_shapes=shapes, with_stack=stack, profile_memory=memory)
        if self.device.type == "npu":
            level = {"level_none": mod.ProfilerLevel.Level_none, "level0": mod.ProfilerLevel.Level0,
                     "level1": mod.ProfilerLevel.Level1, "level2": mod.ProfilerLevel.Level2}[p.profile_level]
            export = mod.ExportType.Db if p.profile_export_type == "db" else mod.ExportType.Text
            kwargs["experimental_config"] = mod._ExperimentalConfig(
                profiler_level=level, export_type=export, data_simplification=p.profile_data_simplification)
            kwargs["on_trace_ready"] = mod.tensorboard_trace_handler(p.profile_save_path)
        elif p.profile_export_type == "db":
            log.warning("profile_export_type db exists only on Ascend NPU; writing a chrome trace instead")
        return mod.profile(**kwargs)
