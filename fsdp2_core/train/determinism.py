"""Deterministic mode (training.deterministic; Megatron --deterministic-mode, MindSpeed --npu-deterministic).

Megatron's mode picks deterministic kernels, turns on torch's deterministic algorithms and requires a fixed NCCL
all-reduce algorithm. Here the same: torch raises on an operation with no deterministic implementation rather than
run it nondeterministically, and the settings that the libraries read from the environment are given defaults
before any communicator or cuBLAS handle exists. A value the environment already holds is the user's and is kept.
"""
from __future__ import annotations

import os

import torch

DETERMINISTIC_ENV = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # cuBLAS is reproducible only with a fixed workspace (torch asks for it)
    "NCCL_ALGO": "Ring",  # one all-reduce algorithm whatever the message size (Megatron requires NCCL_ALGO set)
    "HCCL_DETERMINISTIC": "true",  # Ascend: deterministic collectives and reductions
    "NVTE_ALLOW_NONDETERMINISTIC_ALGO": "0",  # Transformer Engine's attention, should a kernel come from it
    "FLASH_ATTENTION_DETERMINISTIC": "1",  # transformers' flash-attention 2 path: the deterministic backward
}


def enable_determinism() -> list[str]:
    """Turn deterministic mode on for this process; returns the environment settings it added (for the log)."""
    added = []
    for name, value in DETERMINISTIC_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            added.append(f"{name}={value}")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return added
