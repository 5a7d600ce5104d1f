"""Reading Megatron's pickles (`model_optim_rng.pt`, `common.pt`) without running code from them.

`torch.load(weights_only=True)` refuses every global it does not know. Megatron's files
hold a few more: the saved arguments (`argparse.Namespace`), the enums some arguments
and the rerun state machine carry, and numpy's generator state in `rng_state`. Those
are allowed here, the enums as inert stand-ins (megatron-core need not be installed);
anything else is refused with its name, unless the caller trusts the file
(`--trust-megatron-pickle`), which unpickles it fully, as Megatron itself does.
"""
import argparse
import io
import os
from typing import Any, Dict, List

import numpy as np
import torch

from ..layout import CheckpointError

TRUST_FLAG = "--trust-megatron-pickle"

# Enums Megatron-LM (0.x to 0.16) stores in `args` or in its rerun state.
_MEGATRON_ENUMS = (
    "megatron.core.enums.ModelType", "megatron.core.enums.Fp8Recipe", "megatron.core.enums.Fp4Recipe",
    "megatron.core.transformer.enums.ModelType", "megatron.core.transformer.enums.LayerType",
    "megatron.core.transformer.enums.AttnType", "megatron.core.transformer.enums.AttnMaskType",
    "megatron.core.transformer.enums.AttnBackend", "megatron.core.transformer.enums.CudaGraphScope",
    "megatron.core.rerun_state_machine.RerunDiagnostic", "megatron.core.rerun_state_machine.RerunMode",
    "megatron.core.rerun_state_machine.RerunState", "megatron.core.rerun_state_machine.RerunValidationStatus",
    "megatron.core.dist_checkpointing.validation.StrictHandling",
    "megatron.model.enums.AttnMaskType", "megatron.model.enums.LayerType", "megatron.model.enums.AttnType",
    "megatron.legacy.model.enums.AttnMaskType", "megatron.legacy.model.enums.LayerType",
    "megatron.legacy.model.enums.AttnType",
)


class MegatronEnum:
    """An inert stand-in for one of Megatron's enum members: its class path and value."""
    path = ""

    def __init__(self, value=None):
        self.value = value

    def __repr__(self) -> str:
        return f"<{self.path} {self.value!r}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, MegatronEnum) and (self.path, self.value) == (other.path, other.value)

    def __hash__(self) -> int:
        return hash((self.path, self.value))


def _stand_in(path: str) -> type:
    return type(path.rsplit(".", 1)[-1], (MegatronEnum,), {"path": path})


def _numpy_globals() -> List[tuple]:
    """numpy's array pickling (the RNG state holds a uint32 array), under numpy 1 and 2 names."""
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core
    reconstruct = core.multiarray._reconstruct
    out = [(reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct"),
           (np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for name in ("UInt32DType", "Float64DType", "Int64DType", "UInt8DType"):
        if hasattr(np, "dtypes") and hasattr(np.dtypes, name):
            out.append((getattr(np.dtypes, name), f"numpy.dtypes.{name}"))
    return out


_ALLOWED: List[Any] = [(argparse.Namespace, "argparse.Namespace")] + [(_stand_in(p), p) for p in _MEGATRON_ENUMS]


def allowed_globals() -> List[Any]:
    return _ALLOWED + _numpy_globals()


def load_megatron_pickle(path: str, trust: bool = False) -> Dict[str, Any]:
    """The object `torch.save` wrote to `path`; refuses unknown types unless `trust`."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if trust:
        return _load_trusted(path)
    with torch.serialization.safe_globals(allowed_globals()):
        try:
            unknown = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as exc:  # noqa: BLE001  (a truncated or foreign file)
            raise CheckpointError(f"{path} is not a readable torch.save file ({type(exc).__name__}: {exc}); "
                                  "it may be truncated: copy it again from the original checkpoint") from None
        if unknown:
            raise CheckpointError(
                f"{path} holds types outside the allow-list of what Megatron stores: {', '.join(sorted(unknown))}. "
                f"Unpickling them could run code from the file. If you trust the file, pass {TRUST_FLAG}")
        try:
            return _torch_load(path, weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path} could not be read ({type(exc).__name__}: {exc}); it may be truncated: "
                                  "copy it again from the original checkpoint") from None


def _load_trusted(path: str) -> Dict[str, Any]:
    try:
        return _torch_load(path, weights_only=False)
    except ModuleNotFoundError as exc:
        raise CheckpointError(f"{path} names {exc.name}, which is not installed: loading it fully needs the code "
                              "that wrote it (megatron-core, Megatron-LM on the Python path)") from None
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path} could not be read ({type(exc).__name__}: {exc}); it may be truncated") from None


def _torch_load(path: str, weights_only: bool):
    """Memory-mapped where the file allows it (files of the zip format), so shards are read on demand."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def load_megatron_bytes(data: bytes, where: str, trust: bool = False):
    """An object megatron-core stored as bytes inside a distributed checkpoint, under the same allow-list."""
    if trust:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    with torch.serialization.safe_globals(allowed_globals()):
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{where} could not be read under the allow-list of what Megatron stores "
                                  f"({type(exc).__name__}: {exc}); if you trust the file, pass {TRUST_FLAG}") from None
