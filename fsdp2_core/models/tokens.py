"""Adding tokens to the tokenizer and growing the embedding (and output) rows to match.

Initialisation of the new rows (`init_special_tokens`):
  noise_init         mean of the existing rows plus Gaussian noise (std 1/sqrt(hidden))
  desc_init          mean of the rows of the tokens of the token's description
  desc_init_w_noise  desc_init plus the same noise
Descriptions come from `new_special_tokens_config`, a YAML {'<token>': 'description'}.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import yaml

from fsdp2_core.config import ConfigError


def _split(text: Optional[str]) -> List[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def read_token_descriptions(path: str) -> Dict[str, str]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"new_special_tokens_config {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"new_special_tokens_config {path}: expected a mapping {{'<token>': 'description'}}")
    return {str(k): str(v) for k, v in doc.items()}


def extend_tokenizer(tokenizer, model_cfg) -> Dict[str, Optional[str]]:
    """Add the configured tokens; return {added token: description or None}."""
    m = model_cfg
    added: Dict[str, Optional[str]] = {}
    plain = _split(m.add_tokens)
    if plain and tokenizer.add_tokens(plain, special_tokens=False):
        added.update({t: None for t in plain})
    if m.new_special_tokens_config:  # wins over add_special_tokens
        descriptions = read_token_descriptions(m.new_special_tokens_config)
    else:
        descriptions = {t: None for t in _split(m.add_special_tokens)}
    if descriptions:
        tokenizer.add_tokens(list(descriptions), special_tokens=True)  # keeps existing special tokens
        added.update(descriptions)
    return added


def new_rows(weight: torch.Tensor, count: int, mode: str, desc_ids: Sequence[Optional[List[int]]] = (),
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Rows for `count` new tokens given the existing `weight` [vocab, hidden]."""
    hidden = weight.shape[1]
    noise = torch.randn(count, hidden, generator=generator, dtype=torch.float32) / math.sqrt(hidden)
    mean = weight.float().mean(dim=0, keepdim=True).expand(count, hidden)
    if mode == "noise_init":
        return (mean + noise).to(weight.dtype)
    if mode not in ("desc_init", "desc_init_w_noise"):
        raise ConfigError(f"init_special_tokens {mode!r}: use noise_init, desc_init or desc_init_w_noise")
    rows = []
    for i in range(count):
        ids = desc_ids[i] if i < len(desc_ids) else None
        rows.append(weight[ids].float().mean(dim=0) if ids else mean[i])
    out = torch.stack(rows)
    if mode == "desc_init_w_noise":
        out = out + noise
    return out.to(weight.dtype)


def grow_rows(full: torch.Tensor, new_size: int, seed: int) -> torch.Tensor:
    """Extend a checkpoint tensor to `new_size` rows with noise_init rows (meta-device loading)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([full, new_rows(full, new_size - full.shape[0], "noise_init", generator=g)])


def resize_model_vocab(model: nn.Module, tokenizer, model_cfg, added: Dict[str, Optional[str]], seed: int) -> int:
    """Resize embeddings to the tokenizer when asked (or when tokens were added); return the new size."""
    emb = model.get_input_embeddings()
    old = emb.weight.shape[0]
    target = len(tokenizer)
    if target <= old and not added:
        return old
    if target > old and not (model_cfg.resize_vocab or added):
        raise ConfigError(f"the tokenizer has {target} tokens but the model's embedding only {old}; set resize_vocab")
    if target <= old:
        return old  # tokens fit in existing (padded) rows
    model.resize_token_embeddings(target, mean_resizing=False)
    g = torch.Generator().manual_seed(seed)
    desc_ids = []
    for token in list(added)[-(target - old):]:
        text = added.get(token)
        desc_ids.append(tokenizer(text, add_special_tokens=False)["input_ids"] if text else None)
    with torch.no_grad():
        layers = (model.get_input_embeddings(), model.get_output_embeddings())
        for layer in {id(m): m for m in layers if m is not None}.values():
            w = layer.weight
            w[old:] = new_rows(w[:old], target - old, model_cfg.init_special_tokens, desc_ids, g)
    return target
