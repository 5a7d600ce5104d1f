"""Everything that differs between CUDA, Ascend NPU and CPU lives here.

The rest of the engine asks this module for the device, the collective backend,
synchronisation, memory figures, the profiler and the peak FLOP/s used for MFU.
CPU (gloo) is a first-class path: tests and debugging run there.
"""
import datetime
import os
import resource
import socket
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from fsdp2_core.rank_env import export_torchrun_variables


def _npu_available() -> bool:
    try:
        import torch_npu  # noqa: F401  (registers torch.npu)
    except ImportError:
        return False
    return hasattr(torch, "npu") and torch.npu.is_available()


def detect_device_type() -> str:
    """cuda, npu or cpu; FSDP2_DEVICE=cpu forces the CPU path on an accelerator machine."""
    forced = os.environ.get("FSDP2_DEVICE")
    if forced:
        if forced not in ("cuda", "npu", "cpu"):
            raise ValueError(f"FSDP2_DEVICE={forced!r}: use cuda, npu or cpu")
        return forced
    if torch.cuda.is_available():
        return "cuda"
    if _npu_available():
        return "npu"
    return "cpu"


BACKENDS = {"cuda": "nccl", "npu": "hccl", "cpu": "gloo"}

# Ascend settings users export in their MindSpeed / Megatron launch scripts. They are read by
# torch_npu / CANN / HCCL themselves; the engine only fills the memory setting from its CUDA
# spelling, applies torch_npu's run-time switches, and reports what is in effect.
NPU_ENV_SETTINGS = (
    "PYTORCH_NPU_ALLOC_CONF",      # caching allocator (e.g. expandable_segments:True)
    "ASCEND_RT_VISIBLE_DEVICES",   # visible NPUs
    "HCCL_CONNECT_TIMEOUT", "HCCL_EXEC_TIMEOUT", "HCCL_BUFFSIZE", "HCCL_DETERMINISTIC", "HCCL_IF_BASE_PORT",
    "TASK_QUEUE_ENABLE",           # operator dispatch queue (0, 1, 2)
    "CPU_AFFINITY_CONF",           # core binding
    "COMBINED_ENABLE", "ASCEND_LAUNCH_BLOCKING", "ASCEND_GLOBAL_LOG_LEVEL", "NPU_ASD_ENABLE",
)


def prepare_npu_environment(environ=None) -> dict:
    """Before torch_npu allocates: PYTORCH_NPU_ALLOC_CONF from PYTORCH_CUDA_ALLOC_CONF when only that is set.

    Returns the Ascend settings in effect (name -> value), for the log."""
    env = os.environ if environ is None else environ
    if "PYTORCH_NPU_ALLOC_CONF" not in env and "PYTORCH_CUDA_ALLOC_CONF" in env:
        env["PYTORCH_NPU_ALLOC_CONF"] = env["PYTORCH_CUDA_ALLOC_CONF"]
    return {name: env[name] for name in NPU_ENV_SETTINGS if name in env}


def configure_npu(npu_module) -> None:
    """torch_npu run-time switches MindSpeed sets: no JIT operator compilation, no private (NZ) weight formats,
    so weights keep the layouts FSDP shards and checkpoints store."""
    if hasattr(npu_module, "set_compile_mode"):
        npu_module.set_compile_mode(jit_compile=False)
    config = getattr(npu_module, "config", None)
    if config is not None and hasattr(config, "allow_internal_format"):
        config.allow_internal_format = False

# Dense bf16 peak TFLOP/s per device, for MFU. Matched by substring of the device name.
PEAK_TFLOPS_BF16 = {
    "H200": 989.0, "H100": 989.0, "H800": 989.0, "H20": 148.0, "A100": 312.0, "A800": 312.0,
    "L40S": 362.0, "A10": 125.0, "4090": 165.0, "B200": 2250.0, "GB200": 2500.0,
    "Ascend910B1": 414.0, "Ascend910B2": 376.0, "Ascend910B3": 313.0, "Ascend910B4": 280.0,
}


@dataclass
class Device:
    type: str            # cuda | npu | cpu
    index: int           # local device index (0 on CPU)
    backend: str

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cpu") if self.type == "cpu" else torch.device(self.type, self.index)

    @property
    def module(self):
        """torch.cuda / torch.npu; None on CPU."""
        return getattr(torch, self.type, None) if self.type != "cpu" else None

    def synchronize(self) -> None:
        if self.module is not None:
            self.module.synchronize()

    def name(self) -> str:
        if self.module is None:
            return "cpu"
        return self.module.get_device_name(self.index)

    def reset_peak_memory(self) -> None:
        if self.module is not None:
            self.module.reset_peak_memory_stats(self.index)

    def peak_memory_gb(self) -> float:
        """Peak allocated accelerator memory; on CPU the process's peak resident set size."""
        if self.module is not None:
            return self.module.max_memory_allocated(self.index) / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux

    def peak_tflops(self, override: Optional[float] = None) -> Optional[float]:
        """Peak dense bf16 TFLOP/s: the override, $FSDP2_PEAK_TFLOPS, or the table; None when unknown (CPU)."""
        if override:
            return float(override)
        env = os.environ.get("FSDP2_PEAK_TFLOPS")
        if env:
            return float(env)
        if self.type == "cpu":
            return None
        name = self.name().replace(" ", "")
        for key, value in PEAK_TFLOPS_BF16.items():
            if key in name:
                return value
        return None

    def profiler_module(self):
        """torch.profiler, or torch_npu.profiler on Ascend."""
        if self.type == "npu":
            import torch_npu
            return torch_npu.profiler
        return torch.profiler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(device_type: Optional[str] = None, timeout_minutes: Optional[float] = None) -> Device:
    """Join (or create) the default process group; a plain `python` run becomes a world of one.

    Ranks started by mpirun or srun (no torchrun) are read from their launcher's variables (rank_env.py).
    `timeout_minutes` bounds every collective of the group (a rank that stops answering fails the others
    after it instead of hanging them); None keeps PyTorch's default for the backend. A group that already
    exists keeps its own timeout."""
    export_torchrun_variables()
    device_type = device_type or detect_device_type()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = Device(device_type, local_rank if device_type != "cpu" else 0, BACKENDS[device_type])
    if device.type == "npu":
        import logging
        settings = prepare_npu_environment()
        import torch_npu  # noqa: F401  (registers torch.npu)
        configure_npu(torch.npu)
        logging.getLogger(__name__).info("Ascend NPU, backend hccl; settings in effect: %s",
                                         ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults")
    if device.module is not None:
        device.module.set_device(device.index)
    if not dist.is_initialized():
        if "RANK" not in os.environ:  # not launched by torchrun
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        kwargs = {"device_id": device.torch_device} if device.type == "cuda" else {}
        if timeout_minutes is not None:
            kwargs["timeout"] = datetime.timedelta(minutes=timeout_minutes)
        dist.init_process_group(backend=device.backend, **kwargs)
    return device
