"""The device mesh: (dp_replicate, dp_shard, cp, tp), plus an expert mesh for MoE.

`fsdp_size` unset means: shard over every data-parallel rank (what Megatron's
distributed optimizer users expect). An explicit value is always honoured; when the
data-parallel ranks outnumber it the rest become replicate groups (HSDP). Note that
`fsdp_size: 1` therefore means plain data parallelism with no sharding at all.
"""
import warnings
from dataclasses import dataclass
from typing import Optional

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from fsdp2_core.config import ConfigError


@dataclass(frozen=True)
class ParallelDims:
    world_size: int
    dp_replicate: int
    dp_shard: int
    cp: int
    tp: int
    ep: int = 1
    ep_fsdp: int = 1

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard


def parallel_dims(parallel_cfg, world_size: int) -> ParallelDims:
    """Check the sizes against the world; raise ConfigError saying what to change."""
    p = parallel_cfg
    tp, cp = p.tp_size, p.cp_size
    if world_size % (tp * cp):
        raise ConfigError(f"world size {world_size} is not divisible by tp_size {tp} × cp_size {cp}; "
                          "change the number of processes or the parallel sizes")
    dp = world_size // (tp * cp)
    shard = dp if p.fsdp_size is None else p.fsdp_size
    if shard < 1 or dp % shard:
        raise ConfigError(f"fsdp_size {p.fsdp_size} must divide the data-parallel size {dp} "
                          f"(world {world_size} / (tp {tp} × cp {cp})); unset it to shard over all {dp} ranks")
    ep, ep_fsdp = p.ep_size, p.ep_fsdp_size
    # Experts are spread over the (dp_shard × cp) ranks of a replica: ep × ep_fsdp must tile them.
    if ep * ep_fsdp > 1 and (shard * cp) % (ep * ep_fsdp):
        raise ConfigError(f"ep_size {ep} × ep_fsdp_size {ep_fsdp} must divide fsdp_size × cp_size = {shard * cp}")
    return ParallelDims(world_size, dp // shard, shard, cp, tp, ep, ep_fsdp)


class Mesh:
    """The device mesh and the sub-meshes and groups the engine uses."""

    def __init__(self, dims: ParallelDims, device_type: str):
        self.dims = dims
        self.device_type = device_type
        self.world = init_device_mesh(device_type, (dims.dp_replicate, dims.dp_shard, dims.cp, dims.tp),
                                      mesh_dim_names=("dp_replicate", "dp_shard", "cp", "tp"))
        # FSDP shards over dp_shard × cp (context-parallel ranks hold the same weights).
        self._shard_cp = self.world["dp_shard", "cp"]._flatten("dp_shard_cp")
        self._dp = self.world["dp_replicate", "dp_shard"]._flatten("dp")
        self._dp_cp = self.world["dp_replicate", "dp_shard", "cp"]._flatten("dp_cp")
        self._expert: Optional[DeviceMesh] = None

    @property
    def tp(self) -> Optional[DeviceMesh]:
        return self.world["tp"] if self.dims.tp > 1 else None

    @property
    def fsdp(self) -> DeviceMesh:
        """1-D shard mesh, or 2-D (replicate, shard) for HSDP."""
        if self.dims.dp_replicate == 1:
            return self._shard_cp
        if self.dims.cp == 1:
            return self.world["dp_replicate", "dp_shard"]
        with warnings.catch_warnings():  # slicing a flattened dim is the documented way for HSDP × CP today
            warnings.simplefilter("ignore")
            return self.world["dp_replicate", "dp_shard_cp"]

    @property
    def cp(self) -> Optional[DeviceMesh]:
        """The context-parallel sub-mesh (ranks sharing one sample's sequence), None when cp_size is 1."""
        return self.world["cp"] if self.dims.cp > 1 else None

    @property
    def dp_cp_group(self) -> dist.ProcessGroup:
        """Every rank holding the same weights (data and context parallel): gradients average over it."""
        return self._dp_cp.get_group()

    @property
    def dp(self) -> DeviceMesh:
        return self._dp

    @property
    def dp_group(self) -> dist.ProcessGroup:
        return self.dp.get_group()

    @property
    def dp_rank(self) -> int:
        return self.dp.get_local_rank()

    @property
    def expert(self) -> DeviceMesh:
        """(ep_replicate, ep_fsdp, ep) over the same ranks; built on first use by the MoE layer."""
        if self._expert is None:
            d = self.dims
            if d.tp > 1:
                raise ConfigError("expert parallelism with tp_size > 1 is not supported yet; set tp_size 1")
            rest = d.world_size // (d.ep * d.ep_fsdp)
            self._expert = init_device_mesh(self.device_type, (rest, d.ep_fsdp, d.ep),
                                            mesh_dim_names=("ep_replicate", "ep_fsdp", "ep"))
        return self._expert

    @property
    def expert_parallel(self) -> bool:
        return self.dims.ep * self.dims.ep_fsdp > 1

    @property
    def ep(self) -> DeviceMesh:
        """Ranks exchanging tokens; each holds ep-th of the experts."""
        return self.expert["ep"]

    @property
    def expert_fsdp(self) -> DeviceMesh:
        """Where FSDP shards expert weights: ep_fsdp, with the remaining ranks as HSDP replicas."""
        if self.dims.world_size == self.dims.ep * self.dims.ep_fsdp:
            return self.expert["ep_fsdp"]
        return self.expert["ep_replicate", "ep_fsdp"]


def build_mesh(parallel_cfg, world_size: int, device_type: str) -> Mesh:
    return Mesh(parallel_dims(parallel_cfg, world_size), device_type)


def forget_meshes() -> None:
    """After the process group is destroyed: drop torch's DTensor redistribution caches. They keep the device
    meshes they were built for alive, and a mesh of a later run in the same process (tests, notebooks) that
    compares equal would be handed the old mesh, whose process groups no longer exist."""
    from torch.distributed.tensor import _redistribute
    _redistribute.clear_redistribute_planner_cache()
    _redistribute._gen_transform_infos.cache_clear()
