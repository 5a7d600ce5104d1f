"""The Ascend NPU path, with a stand-in torch_npu (no NPU here; the path has not yet run on hardware):
device and backend selection, NPU settings from launch scripts, torch_npu.profiler, kernel selection."""
import sys
import types

import pytest
import torch
from transformers import AutoConfig  # noqa: F401  (imported before any stand-in torch_npu)

from fsdp2_core import device as dev
from fsdp2_core.config import build_config
from fsdp2_core.kernels import select
from fsdp2_core.train.profiler import StepProfiler
from tests.kernels.fake_npu import make_fake_torch_npu


class FakeNpuModule(types.SimpleNamespace):
    """What torch_npu registers as torch.npu."""


@pytest.fixture
def npu(monkeypatch):
    torch_npu = make_fake_torch_npu()
    calls = []
    fake = FakeNpuModule(
        is_available=lambda: True, synchronize=lambda: calls.append("sync"),
        get_device_name=lambda i: "Ascend910B2", set_device=lambda i: calls.append(("set_device", i)),
        max_memory_allocated=lambda i: 3 * 2**30, reset_peak_memory_stats=lambda i: calls.append("reset"),
        set_compile_mode=lambda jit_compile: calls.append(("jit_compile", jit_compile)),
        config=types.SimpleNamespace(allow_internal_format=True), calls=calls)
    profiler = types.SimpleNamespace(
        ProfilerActivity=types.SimpleNamespace(CPU="CPU", NPU="NPU"),
        ProfilerLevel=types.SimpleNamespace(Level_none="L_none", Level0="L0", Level1="L1", Level2="L2"),
        ExportType=types.SimpleNamespace(Db="db", Text="text"),
        _ExperimentalConfig=lambda **kw: ("experimental", kw),
        tensorboard_trace_handler=lambda path: ("handler", path),
        profile=lambda **kw: ("profile", kw))
    torch_npu.profiler = profiler
    monkeypatch.setitem(sys.modules, "torch_npu", torch_npu)
    monkeypatch.setattr(torch, "npu", fake, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("FSDP2_DEVICE", raising=False)
    return fake


def test_device_and_backend_selection(npu, monkeypatch):
    assert dev.detect_device_type() == "npu"
    d = dev.Device("npu", 3, dev.BACKENDS["npu"])
    assert d.backend == "hccl" and d.module is npu  # torch.device("npu") needs the real torch_npu (privateuse1)
    assert d.name() == "Ascend910B2" and d.peak_tflops() == 376.0 and d.peak_memory_gb() == 3.0
    d.synchronize()
    d.reset_peak_memory()
    assert npu.calls == ["sync", "reset"]
    monkeypatch.setenv("FSDP2_DEVICE", "cpu")
    assert dev.detect_device_type() == "cpu"  # forced CPU wins on an NPU machine
    monkeypatch.setattr(torch, "npu", FakeNpuModule(is_available=lambda: False))
    monkeypatch.delenv("FSDP2_DEVICE")
    assert dev.detect_device_type() == "cpu"  # torch_npu installed, no NPU visible


def test_npu_settings_from_launch_scripts(npu):
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "HCCL_CONNECT_TIMEOUT": "1200",
           "TASK_QUEUE_ENABLE": "2", "CPU_AFFINITY_CONF": "1", "UNRELATED": "x"}
    settings = dev.prepare_npu_environment(env)
    assert env["PYTORCH_NPU_ALLOC_CONF"] == "expandable_segments:True"  # the CUDA spelling carried over
    assert settings == {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True", "HCCL_CONNECT_TIMEOUT": "1200",
                        "TASK_QUEUE_ENABLE": "2", "CPU_AFFINITY_CONF": "1"}
    env = {"PYTORCH_NPU_ALLOC_CONF": "max_split_size_mb:128", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert dev.prepare_npu_environment(env)["PYTORCH_NPU_ALLOC_CONF"] == "max_split_size_mb:128"  # the NPU one wins
    dev.configure_npu(npu)
    assert ("jit_compile", False) in npu.calls and npu.config.allow_internal_format is False


def test_torch_npu_profiler(npu, tmp_path):
    cfg = build_config({"architecture": {"model_type": "llama"}, "output_dir": str(tmp_path), "stage": "pt",
                        "profile": True, "profile_level": "level1", "profile_export_type": "db",
                        "profile_save_path": str(tmp_path / "prof"), "profile_with_cpu": True})
    prof = StepProfiler(cfg.profiling, 0, dev.Device("npu", 0, "hccl"))
    kind, kw = prof._make()
    assert kind == "profile"
    assert kw["activities"] == ["CPU", "NPU"] and kw["record_shapes"] is True
    assert kw["experimental_config"] == ("experimental", {"profiler_level": "L1", "export_type": "db",
                                                          "data_simplification": False})
    assert kw["on_trace_ready"] == ("handler", str(tmp_path / "prof"))


def test_kernels_select_torch_npu_on_npu(npu):
    assert [select.choose(k, "npu", torch.bfloat16) for k in select.KERNELS] == [
        "npu_rms_norm", "npu_rotary_mul", "npu_fusion_attention", "npu_grouped_matmul"]


def test_hif8_only_on_npu():
    from fsdp2_core.config import ConfigError
    from fsdp2_core.quant import check_quantization
    cfg = build_config({"architecture": {"model_type": "llama"}, "output_dir": "/tmp/x", "stage": "pt",
                        "quant_recipe": "mxfp8", "quant_format": "HIF8"})
    for device_type in ("cpu", "cuda"):
        with pytest.raises(ConfigError, match=f"HIF8.*Ascend.*{device_type}"):
            check_quantization(cfg, device_type)
    with pytest.raises(ConfigError, match="not implemented yet on Ascend"):
        check_quantization(cfg, "npu")
