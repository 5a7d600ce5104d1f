"""BLOOM with several documents in a sample (Megatron's --reset-attention-mask).

transformers' BLOOM builds its ALiBi biases from a 2-D padding mask, so the 4-D mask that keeps documents apart
(`packed.py` makes it additive for BLOOM's eager attention) cannot reach it. Within a row, ALiBi's bias for a key
is its slope times the key's position, and softmax does not change when a row is shifted by a constant: so the
biases of the full, unpadded row serve every document in it, and the 4-D mask does the separating, as in
Megatron-DeepSpeed. The backbone's `build_alibi_tensor` is given that all-ones row when the mask is 4-D.
"""
import torch
from torch import nn


def accept_document_masks(model: nn.Module) -> None:
    """Let a BLOOM model take a 4-D attention mask (documents kept apart); other models are left alone."""
    backbone = getattr(model, "transformer", None)
    if getattr(model.config, "model_type", None) != "bloom" or not hasattr(backbone, "build_alibi_tensor"):
        return
    padding_alibi = backbone.build_alibi_tensor

    def build_alibi_tensor(attention_mask: torch.Tensor, num_heads: int, dtype: torch.dtype) -> torch.Tensor:
        if attention_mask.dim() == 4:
            attention_mask = torch.ones(attention_mask.shape[0], attention_mask.shape[-1], dtype=torch.long,
                                        device=attention_mask.device)
        return padding_alibi(attention_mask, num_heads, dtype)

    backbone.build_alibi_tensor = build_alibi_tensor
