"""Multi-token prediction (Megatron --mtp-num-layers), kept in DeepSeek-V3's Hugging Face layout.

MTP depth k (1..D) predicts the token k+1 positions ahead (megatron-core multi_token_prediction.py): it takes
the previous depth's output h (the main model's final hidden state for k = 1) and the embedding e of the input
token k positions ahead, and runs

    x = eh_proj([enorm(e) ; hnorm(h)])          embedding first, as Megatron and DeepSeek-V3 concatenate
    x = the family's decoder layer (attention and MLP or MoE), at the model's own positions
    h = shared_head.norm(x)                     then the shared output head gives the depth's logits

Each depth is the family's decoder-layer class with enorm, hnorm, eh_proj and shared_head.norm added, appended to
`model.model.layers` beyond num_hidden_layers. The model's own forward runs `layers[:num_hidden_layers]` and
skips them, FSDP, recompute and expert parallelism treat them as layers, and their parameters carry the names
DeepSeek-V3 checkpoints use: model.layers.<L+k-1>.{enorm, hnorm, eh_proj, shared_head.norm, self_attn, mlp, ...}.
The embedding and the output head are the main model's, as Megatron shares them; the Hugging Face export writes
them again as model.layers.<L+k-1>.embed_tokens and .shared_head.head (`export_aliases`), as those checkpoints
hold them, and sets num_nextn_predict_layers (transformers' MtpModel reads the depths back).

The loss (megatron-core GPTModel._postprocess): at depth k the input tokens, the labels and the loss mask are
rolled k positions to the left, the last k positions becoming token 0 and masked out; the depth's loss is its
masked token mean, and training adds mtp_loss_scaling_factor / D · Σ_k loss_k (train/step.py).
"""
import copy
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from fsdp2_core.config import ConfigError

_CLASSES: Dict[Tuple[type, type], type] = {}


def mtp_layer_class(decoder_cls: type, norm_cls: type) -> type:
    """The family's decoder layer with Megatron's MTP projection in front and its final norm behind."""
    key = (decoder_cls, norm_cls)
    if key in _CLASSES:
        return _CLASSES[key]

    def __init__(self, config, layer_idx):
        decoder_cls.__init__(self, config, layer_idx)
        size, eps = config.hidden_size, config.rms_norm_eps
        self.enorm = norm_cls(size, eps=eps)
        self.hnorm = norm_cls(size, eps=eps)
        self.eh_proj = nn.Linear(2 * size, size, bias=False)
        self.shared_head = nn.Module()
        self.shared_head.norm = norm_cls(size, eps=eps)

    def forward(self, hidden_states, embeds=None, **kwargs):
        x = self.eh_proj(torch.cat([self.enorm(embeds), self.hnorm(hidden_states)], dim=-1))
        x = decoder_cls.forward(self, x, **kwargs)
        return self.shared_head.norm(x[0] if isinstance(x, tuple) else x)

    cls = type(f"MTP{decoder_cls.__name__}", (decoder_cls,), {"__init__": __init__, "forward": forward})
    _CLASSES[key] = cls
    return cls


# Per-layer lists of a config that a decoder layer reads by its index (DeepSeek-V3.2 / GLM-MoE-DSA: MLP kind, indexer)
PER_LAYER = ("layer_types", "mlp_layer_types", "indexer_types")


def _layers_config(config, depths: int):
    """The config the MTP layers are built with: per-layer lists (layer_types, ...) extended by their last entry."""
    lists = {name: getattr(config, name, None) for name in PER_LAYER}
    lists = {name: value for name, value in lists.items() if value}
    if not lists:
        return config
    extended = copy.copy(config)
    for name, value in lists.items():
        setattr(extended, name, list(value) + [value[-1]] * depths)
    return extended


def add_mtp_layers(model: nn.Module, depths: int) -> List[nn.Module]:
    """Append `depths` MTP layers to the model's decoder layers (on the current default device); return them."""
    if depths <= 0:
        return []
    backbone = getattr(model, "model", None)
    layers = getattr(backbone, "layers", None)
    config = model.config
    if layers is None or not hasattr(layers[0], "input_layernorm") or not hasattr(config, "rms_norm_eps"):
        raise ConfigError(f"mtp_num_layers {depths}: multi-token prediction needs a decoder of RMSNorm layers "
                          f"(Llama-style families); {type(model).__name__} has none; set mtp_num_layers 0")
    count = config.num_hidden_layers
    if len(layers) != count:
        raise ConfigError(f"mtp_num_layers {depths}: the model already has {len(layers) - count} layers beyond "
                          f"num_hidden_layers {count}")
    cls = mtp_layer_class(type(layers[0]), type(layers[0].input_layernorm))
    build_config = _layers_config(config, depths)
    added = []
    for k in range(depths):
        layer = cls(build_config, count + k)
        for module in layer.modules():  # the copy only served the construction; share the model's config
            if getattr(module, "config", None) is build_config:
                module.config = config
        layers.append(layer)
        added.append(layer)
    model._fsdp2_mtp_layers = added
    config.num_nextn_predict_layers = depths  # DeepSeek-V3's field (num_mtp_layers in transformers' attribute map)
    return added


def mtp_layers(model: nn.Module) -> List[nn.Module]:
    return list(getattr(model, "_fsdp2_mtp_layers", None) or [])


def roll_left(x: torch.Tensor, k: int) -> torch.Tensor:
    """Megatron's roll_tensor applied k times: shift k positions left along the sequence, zeros behind."""
    rolled = torch.roll(x, shifts=-k, dims=-1)
    rolled[..., x.shape[-1] - k:] = 0
    return rolled


def depth_inputs(tokens, labels, loss_mask, depths: int) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(tokens, labels, loss mask) of each MTP depth, over the whole sequence."""
    return [(roll_left(tokens, k), roll_left(labels, k), roll_left(loss_mask, k)) for k in range(1, depths + 1)]


def mtp_hidden_states(model: nn.Module, hidden: torch.Tensor, depth_tokens: List[torch.Tensor],
                      position_ids: torch.Tensor, **attention_kwargs) -> List[torch.Tensor]:
    """Each depth's output (before the shared head), from the main model's final hidden state."""
    backbone = model.model
    embed = model.get_input_embeddings()
    position_embeddings = backbone.rotary_emb(hidden, position_ids)
    outputs = []
    for layer, tokens in zip(mtp_layers(model), depth_tokens):
        hidden = layer(hidden, embeds=embed(tokens), position_embeddings=position_embeddings,
                       position_ids=position_ids, attention_mask=None, use_cache=False, **attention_kwargs)
        outputs.append(hidden)
    return outputs


def export_aliases(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """The per-depth copies of the shared embedding and head that DeepSeek-V3 checkpoints hold."""
    count = model.config.num_hidden_layers
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    out = []
    for k in range(len(mtp_layers(model))):
        out += [(f"model.layers.{count + k}.embed_tokens.weight", embed),
                (f"model.layers.{count + k}.shared_head.head.weight", head)]
    return out
