"""The `torch` (legacy) format: one `model_optim_rng.pt` per model-parallel rank.

    mp_rank_TT/                  tensor-parallel rank TT (no pipeline, no expert parallelism)
    mp_rank_TT_PPP/              ... and pipeline stage PPP
    mp_rank_TT[_PPP]_EEE/        ... and expert-parallel rank EEE

Each file holds `model` (or `model0`, `model1`, ... with virtual pipeline stages) with
layer numbers local to the chunk. Chunks hold consecutive layers in Megatron's order
(virtual stage, then pipeline stage), so a chunk's first global layer is the number of
layers of the chunks before it; the split the saved args describe is checked against
what the files hold. Experts are local to their expert-parallel rank:
`local_experts.M` (SequentialMLP), `linear_fc1.weightM` (TEGroupedMLP) or
`weight1`/`weight2` (GroupedMLP, experts side by side). Gated DeltaNet's fused `in_proj.weight` and
`conv1d.weight` hold this rank's share of each part one after the other; they are read as their parts
(layout.GDN_PARTS), which tensor parallelism splits as any column-parallel tensor.
"""
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..layout import CheckpointError
from .detect import MP_RANK
from .layout import GDN_PARTS, LAYER, MTP_LAYER, canonical_rest, gdn_part_sizes, is_extra_state, merge_tp, tp_dim
from .safe_load import load_megatron_pickle

FILE = "model_optim_rng.pt"
_LOCAL_EXPERT = re.compile(r"^mlp\.experts\.local_experts\.(\d+)\.(.+)$")
_TE_GROUPED = re.compile(r"^mlp\.experts\.(linear_fc[12])\.(weight|bias)(\d+)$")
_GROUPED = re.compile(r"^mlp\.experts\.weight([12])$")

Key = Tuple[int, int, int]  # (tensor, pipeline, expert) rank


def rank_dir(tp_rank: int, pp_rank: int, ep_rank: int, pp: int, ep: int) -> str:
    """Megatron's get_checkpoint_name: the directory of one model-parallel rank."""
    name = f"mp_rank_{tp_rank:02d}" + (f"_{pp_rank:03d}" if pp > 1 else "")
    return name + (f"_{ep_rank:03d}" if ep > 1 else "")


def first_file(path: str) -> str:
    """Rank (0, 0, 0)'s file: it carries the args."""
    names = sorted(n for n in os.listdir(path) if MP_RANK.match(n))
    return os.path.join(path, names[0], FILE)


def parallel_sizes(args) -> Tuple[int, int, int]:
    return (int(getattr(args, "tensor_model_parallel_size", 1) or 1),
            int(getattr(args, "pipeline_model_parallel_size", 1) or 1),
            int(getattr(args, "expert_model_parallel_size", 1) or 1))


class LegacyReader:
    """Whole tensors under canonical names, joined from every rank's file on demand (files are memory-mapped)."""

    def __init__(self, path: str, args, trust: bool = False, first: Optional[dict] = None):
        self.path, self.args, self.trust = path, args, trust
        self.tp, self.pp, self.ep = parallel_sizes(args)
        self.gated = bool(getattr(args, "swiglu", False) or getattr(args, "quick_geglu", False))
        self.tied = not getattr(args, "untie_embeddings_and_output_weights", False)
        etp = getattr(args, "expert_tensor_parallel_size", None)
        # experts whole on every tensor-parallel rank (gpt-oss's biased experts need it) read from one rank's file
        self.whole_experts = etp == 1 and self.ep == 1
        if getattr(args, "num_experts", None) and etp not in (None, self.tp) and not self.whole_experts:
            raise CheckpointError(f"{path}: experts split {etp}-way (expert_tensor_parallel_size) but the other layers "
                                  f"{self.tp}-way; legacy checkpoints are read only when the two agree. Save it with "
                                  "--ckpt-format torch_dist, whose tensors are whole, and convert that")
        self.files = self._files()
        self.states: Dict[Key, dict] = {}
        if first is not None:
            self.states[(0, 0, 0)] = first
        self.sources: Dict[str, Dict[int, Callable[[], torch.Tensor]]] = {}
        self._index()

    # ---------------------------------------------------------------- files
    def _files(self) -> Dict[Key, str]:
        expected = {(t, p, e): rank_dir(t, p, e, self.pp, self.ep)
                    for t in range(self.tp) for p in range(self.pp) for e in range(self.ep)}
        present = {n for n in os.listdir(self.path) if MP_RANK.match(n)}
        sizes = f"tensor parallel {self.tp}, pipeline {self.pp}, expert parallel {self.ep} (from the saved args)"
        missing = [d for d in expected.values()
                   if d not in present or not os.path.isfile(os.path.join(self.path, d, FILE))]
        if missing:
            raise CheckpointError(f"{self.path}: missing shard {', '.join(m + '/' + FILE for m in missing)}; the "
                                  f"checkpoint was saved with {sizes}. Copy the missing rank directories again")
        extra = sorted(present - set(expected.values()))
        if extra:
            raise CheckpointError(f"{self.path}: {', '.join(extra)} does not fit {sizes}; the args and the rank "
                                  "directories disagree (directories from two different saves?)")
        return {k: os.path.join(self.path, d, FILE) for k, d in expected.items()}

    def state(self, key: Key) -> dict:
        if key not in self.states:
            self.states[key] = load_megatron_pickle(self.files[key], trust=self.trust)
        return self.states[key]

    # ---------------------------------------------------------------- index
    def _chunks(self, key: Key) -> List[Tuple[int, dict]]:
        sd = self.state(key)
        if "model" in sd:
            return [(0, sd["model"])]
        chunks = sorted((int(k[5:]), v) for k, v in sd.items() if re.fullmatch(r"model\d+", k))
        if not chunks:
            raise CheckpointError(f"{self.files[key]} holds no model state (no 'model' or 'model0' entry): it was "
                                  "saved without weights, or is not a Megatron checkpoint")
        return chunks

    def _layer_offsets(self) -> Dict[Tuple[int, int], int]:
        """(virtual stage, pipeline stage) -> global number of its first layer."""
        counts: Dict[Tuple[int, int], int] = {}
        for p in range(self.pp):
            for v, model in self._chunks((0, p, 0)):
                found = [int(m.group(1)) for m in map(LAYER.match, model) if m]
                counts[(v, p)] = max(found) + 1 if found else 0
        order = sorted(counts, key=lambda vp: (vp[0], vp[1]))
        offsets, total = {}, 0
        for vp in order:
            offsets[vp] = total
            total += counts[vp]
        layers = getattr(self.args, "num_layers", None)
        if layers is not None and total != layers:
            virtual = len(order) > self.pp
            per = ", ".join(f"{rank_dir(0, p, 0, self.pp, self.ep)}/model{v if virtual else ''}: {counts[(v, p)]}"
                            for v, p in order)
            raise CheckpointError(f"{self.path}: the rank files hold {total} layers ({per}) but the saved args say "
                                  f"num_layers {layers}")
        return offsets

    def _index(self) -> None:
        offsets = self._layer_offsets()
        experts = int(getattr(self.args, "num_experts", None) or 0)
        local_experts = experts // self.ep if experts else 0
        for (t, p, e) in self.files:
            for v, model in self._chunks((t, p, e)):
                for local, tensor in model.items():
                    if tensor is None or is_extra_state(local) or not isinstance(tensor, torch.Tensor):
                        continue
                    self._add(local, (t, p, e), v, offsets[(v, p)], local_experts)

    def _add(self, local: str, key: Key, v: int, offset: int, local_experts: int) -> None:
        t, p, e = key
        m, mtp = LAYER.match(local), MTP_LAYER.match(local)
        if m:
            prefix, rest = f"decoder.layers.{offset + int(m.group(1))}.", m.group(2)
        elif mtp:  # MTP depths are numbered from 0 on the last stage, with no offset
            prefix, rest = mtp.group(1), mtp.group(3)
        else:
            if e == 0 and not (local == "output_layer.weight" and self.tied):
                self._source(local, t, key, v, local)
            return
        rest = canonical_rest(rest)
        first_expert = e * local_experts
        if (x := _LOCAL_EXPERT.match(rest)):
            self._source(f"{prefix}mlp.experts.{first_expert + int(x.group(1))}.{x.group(2)}", t, key, v, local)
        elif (x := _TE_GROUPED.match(rest)):
            self._source(f"{prefix}mlp.experts.{first_expert + int(x.group(3))}.{x.group(1)}.{x.group(2)}", t, key,
                         v, local)
        elif (x := _GROUPED.match(rest)):
            for m_ in range(local_experts):
                self._source(f"{prefix}mlp.experts.{first_expert + m_}.linear_fc{x.group(1)}.weight", t, key, v, local,
                             lambda w, m_=m_, which=x.group(1): self._grouped_expert(w, m_, which, local_experts))
        elif (x := re.fullmatch(r"self_attention\.(in_proj\.weight|conv1d\.weight)", rest)) and e == 0:
            start = 0
            for part, size in zip(GDN_PARTS[x.group(1)], gdn_part_sizes(self.args, x.group(1))):
                self._source(f"{prefix}{rest}.{part}", t, key, v, local,
                             lambda w, a=start, n=size // self.tp: w.narrow(0, a, n))
                start += size // self.tp
        elif e == 0:
            self._source(prefix + rest, t, key, v, local)

    def _grouped_expert(self, w: torch.Tensor, m: int, which: str, local_experts: int) -> torch.Tensor:
        """Expert m of GroupedMLP's weight1 ([hidden, experts x fc1 out]) or weight2 ([experts x fc2 in, hidden]),
        which hold each expert's transposed weight side by side in memory."""
        hidden = self.args.hidden_size
        if which == "1":
            return w.reshape(local_experts, hidden, -1)[m].t()
        return w.reshape(local_experts, -1, hidden)[m].t()

    def _source(self, name, t, key, v, local, transform=None) -> None:
        chunk = "model" if "model" in self.state(key) else f"model{v}"

        def get():
            tensor = self.state(key)[chunk][local]
            return transform(tensor) if transform else tensor
        self.sources.setdefault(name, {})[t] = get

    # ---------------------------------------------------------------- access
    def names(self) -> List[str]:
        return list(self.sources)

    def get(self, name: str) -> torch.Tensor:
        ranks = self.sources[name]
        if len(ranks) != self.tp and len(ranks) != 1:
            raise CheckpointError(f"{self.path}: {name} is present in {len(ranks)} of the {self.tp} tensor-parallel "
                                  "rank files")
        split = tp_dim(name) is not None and not (self.whole_experts and ".mlp.experts." in name)
        wanted = sorted(ranks) if split else sorted(ranks)[:1]
        shards = [ranks[t]() for t in wanted]
        return merge_tp(name, shards, self.gated).detach().clone()

    def common(self) -> dict:
        """Rank 0's non-model entries: iteration, args, opt_param_scheduler, rng_state, checkpoint_version, ..."""
        return {k: v for k, v in self.state((0, 0, 0)).items() if not re.fullmatch(r"model\d*", k)}
