"""Megatron's --reset-attention-mask: documents packed in a sample do not attend to each other.

BLOOM (ALiBi) takes the 4-D document mask (models/alibi_documents.py): each document's logits equal those of the
document alone, since ALiBi depends only on distances. And a mask is built whenever the documents have no other
way to reach attention (reset_attention_mask without reset_position_ids)."""
from types import SimpleNamespace

import pytest
import torch

from fsdp2_core.models.alibi_documents import accept_document_masks
from fsdp2_core.models.packed import packed_attention_inputs
from fsdp2_core.train.data import needs_dense_mask


def _bloom():
    from transformers import AutoModelForCausalLM, BloomConfig
    torch.manual_seed(0)
    config = BloomConfig(vocab_size=64, hidden_size=32, n_layer=2, n_head=4, hidden_dropout=0.0,
                         attention_dropout=0.0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def _document_mask(lengths):
    segment = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    n = int(sum(lengths))
    allowed = torch.tril(torch.ones(n, n, dtype=torch.bool)) & (segment[:, None] == segment[None, :])
    return allowed[None, None]  # True = may attend


@pytest.mark.parametrize("accepts", [True, False])
def test_bloom_documents_in_a_row_give_the_logits_of_each_document_alone(accepts):
    model = _bloom()
    if accepts:
        accept_document_masks(model)
    docs = [torch.randint(1, 64, (1, n)) for n in (5, 6, 3)]
    row = torch.cat(docs, 1)
    ones = torch.ones_like(row, dtype=torch.float)
    inputs = packed_attention_inputs(model, row, row, ones, torch.arange(row.shape[1])[None],
                                     _document_mask([5, 6, 3]))
    mask = inputs[4]
    assert mask.dim() == 4 and mask.dtype == torch.float32  # additive, as BLOOM's eager attention adds it
    with torch.no_grad():
        if not accepts:  # transformers alone builds ALiBi from a 2-D padding mask: a 4-D one does not fit
            with pytest.raises((RuntimeError, ValueError)):
                model(input_ids=row, attention_mask=mask)
            return
        packed = model(input_ids=row, attention_mask=mask).logits[0]
        alone = torch.cat([model(input_ids=d).logits[0] for d in docs])
    assert torch.allclose(packed, alone, atol=1e-5)


def test_other_models_are_left_alone():
    from transformers import AutoModelForCausalLM, LlamaConfig
    model = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                                         num_hidden_layers=1, num_attention_heads=4))
    before = dict(vars(model.model))
    accept_document_masks(model)
    assert dict(vars(model.model)) == before


@pytest.mark.parametrize("reset_attention_mask, reset_position_ids, asked, built", [
    (True, False, False, True),    # the documents have no other way to reach attention
    (True, True, False, False),    # the restarting positions carry them
    (False, False, True, True),    # asked for (Megatron's default, --create-attention-mask-in-dataloader)
    (False, False, False, False),
])
def test_a_dense_mask_is_built_when_nothing_else_carries_the_documents(reset_attention_mask, reset_position_ids,
                                                                        asked, built):
    data = SimpleNamespace(reset_attention_mask=reset_attention_mask, reset_position_ids=reset_position_ids,
                           create_attention_mask_in_dataloader=asked)
    assert needs_dense_mask(data) == built
