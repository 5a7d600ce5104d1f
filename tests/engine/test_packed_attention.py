"""Neat-packed rows without a 4-D mask from the data: every form in which their boundaries reach attention
(models/packed.py) gives the losses of the 4-D block-diagonal mask the collator used to build."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsdp2_core.data.lf.collator import IGNORE_INDEX, SFTCollator
from fsdp2_core.models.attention import document_ids, install_attention
from fsdp2_core.models.document_attention import NAME as DOCUMENT_SDPA
from fsdp2_core.models.document_attention import documents_of, use_document_attention
from fsdp2_core.models.packed import boundary_form, packed_attention_inputs
from fsdp2_core.train.loss import lm_loss_sums

QWEN3 = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, max_position_embeddings=128)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.for_model("qwen3", **QWEN3)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def _packed_rows(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for lengths in ((7, 12, 5), (20, 3)):
        ids, labels = [], []
        for n in lengths:
            sample = rng.integers(10, 250, size=n).tolist()
            ids += sample
            labels += [IGNORE_INDEX] * (n // 3) + sample[n // 3:]
        rows.append({"input_ids": ids, "labels": labels, "seq_lens": list(lengths)})
    return rows


def _old_mask(batch) -> torch.Tensor:
    """The [b, 1, L, L] mask the collator built before (True = may attend): causal inside each segment of
    cu_seqlens, the row's padding one more segment."""
    b, length = batch["tokens"].shape
    allowed = torch.zeros(b, 1, length, length, dtype=torch.bool)
    cu = batch["cu_seqlens"].tolist()
    for start, end in zip(cu[:-1], cu[1:]):
        r, s = divmod(start, length)
        n = end - start
        allowed[r, 0, s:s + n, s:s + n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
    return allowed


def _reference_sums(model, batch):
    """Today's losses: the transformers forward with the 4-D boolean mask, our masked cross entropy."""
    logits = model(input_ids=batch["tokens"], position_ids=batch["position_ids"],
                   attention_mask=_old_mask(batch)).logits.float()
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), reduction="none")
    return (losses * batch["loss_mask"].reshape(-1)).sum(), batch["loss_mask"].sum()


def _sums(model, batch, **kw):
    return lm_loss_sums(model, batch["tokens"], batch["labels"], batch["loss_mask"],
                        position_ids=batch["position_ids"], **kw)


def test_boundary_forms():
    form = lambda impl: boundary_form(SimpleNamespace(config=SimpleNamespace(_attn_implementation=impl)))  # noqa
    assert [form(i) for i in ("sdpa", "eager", "fsdp2_fused", "flash_attention_2", "flash_attention_3",
                              "kernels-community/flash-attn", "fsdp2_ulysses", "flex_attention")] == \
        ["additive"] * 3 + ["varlen"] * 3 + ["documents", "positions"]


def test_additive_mask_from_positions_equals_the_old_mask(model):
    model = copy.deepcopy(model)
    model._fsdp2_document_sdpa = False  # the mask form, as eager attention or an accelerator without varlen gets it
    batch = SFTCollator(0, neat_packing=True)(_packed_rows())
    assert "attention_mask" not in batch
    with torch.no_grad():
        ref_s, ref_n = _reference_sums(model, batch)
        s, n = _sums(model, batch)
        s_old, _ = _sums(model, batch, attention_mask=_old_mask(batch))  # a 4-D bool mask from the data
        s_cross, _ = _sums(model, dict(batch, position_ids=torch.arange(batch["tokens"].shape[1]).expand(2, -1)))
    assert float(n) == float(ref_n)
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s_old, ref_s, rtol=1e-6, atol=1e-5)
    assert abs(float(s_cross) - float(ref_s)) > 1e-3  # attention across samples would show


def test_varlen_inputs_flatten_rows_with_the_collators_lengths(model):
    batch = SFTCollator(0, neat_packing=True)(_packed_rows())
    flash = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    tokens, labels, loss_mask, positions, mask, extra = packed_attention_inputs(
        flash, batch["tokens"], batch["labels"], batch["loss_mask"], batch["position_ids"], None,
        batch["cu_seqlens"], 20)
    length = batch["tokens"].shape[1]
    assert tokens.shape == (1, 2 * length) and mask is None
    assert extra["cu_seq_lens_q"].tolist() == [0, 7, 19, 24, length + 20, length + 23, 2 * length]
    assert extra["cu_seq_lens_k"] is extra["cu_seq_lens_q"] and extra["max_length_q"] == extra["max_length_k"] == 20
    assert positions.reshape(2, length).tolist() == batch["position_ids"].tolist()
    # the flattened row computes what the rows computed: SDPA reads the same samples from the single row's positions
    with torch.no_grad():
        ref_s, _ = _reference_sums(model, batch)
        s, _ = lm_loss_sums(model, tokens, labels, loss_mask, position_ids=positions)
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=1e-5)
    rows = SFTCollator(0)([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}] * 2)  # unpacked rows stay as they are
    kept = packed_attention_inputs(flash, rows["tokens"], rows["labels"], rows["loss_mask"], rows["position_ids"])
    assert kept[0] is rows["tokens"] and kept[5] == {}


def test_our_attention_core_reads_the_samples_from_positions(model):
    ours = copy.deepcopy(model)
    install_attention(ours)
    assert boundary_form(ours) == "documents"
    batch = SFTCollator(0, neat_packing=True)(_packed_rows())
    with torch.no_grad():
        ref_s, _ = _reference_sums(model, batch)
        s, _ = _sums(ours, batch)
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=1e-5)


def test_training_steps_equal_the_old_masked_run(model):
    """Three AdamW steps on neat-packed rows: the same losses as with the old 4-D mask."""
    runs = []
    for old in (True, False):
        m = copy.deepcopy(model)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
        losses = []
        for seed in range(3):
            batch = SFTCollator(0, neat_packing=True)(_packed_rows(seed))
            s, n = _sums(m, batch, attention_mask=_old_mask(batch) if old else None)
            (s / n).backward()
            opt.step()
            opt.zero_grad()
            losses.append(float((s / n).detach()))
        runs.append(losses)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)


def test_document_attention_on_cpu_equals_the_old_mask_in_loss_and_gradients(model):
    """SDPA once per packed sample (one-token documents, the padding, take their own value): the old mask's loss
    and gradients, with a row padded by many positions."""
    ours, ref = _plain_sdpa(model), _plain_sdpa(model)
    rows = _packed_rows() + [{"input_ids": [11, 12, 13, 14, 15], "labels": [-100, 12, 13, 14, 15], "seq_lens": [5]}]
    batch = SFTCollator(0, neat_packing=True)(rows)
    s, n = _sums(ours, batch)
    assert ours._fsdp2_document_sdpa and ours.config._attn_implementation == DOCUMENT_SDPA  # installed, on the CPU
    (s / n).backward()
    ref_s, ref_n = _reference_sums(ref, batch)
    (ref_s / ref_n).backward()
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=1e-5)
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():  # unpacked rows through the installed implementation: plain SDPA with its padding mask
        plain = SFTCollator(0)([{"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8]}, {"input_ids": [9, 10],
                                                                                     "labels": [9, 10]}])
        args = (plain["tokens"], plain["labels"], plain["loss_mask"])
        kw = dict(position_ids=plain["position_ids"], attention_mask=plain.get("attention_mask"))
        torch.testing.assert_close(lm_loss_sums(ours, *args, **kw)[0], lm_loss_sums(ref, *args, **kw)[0])


def test_documents_of_merges_runs_of_one_token_documents():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7], [0, 0, 1, 0, 1, 2, 0, 0]])
    assert documents_of(document_ids(positions)) == [[(0, 3, False), (3, 5, False), (5, 8, True)], [(0, 8, False)],
                                       [(0, 1, True), (1, 3, False), (3, 6, False), (6, 8, True)]]


def _plain_sdpa(model):
    fresh = copy.deepcopy(model)
    fresh.__dict__.pop("_fsdp2_document_sdpa", None)  # other tests' packed rows installed it on the shared model
    fresh.config._attn_implementation = "sdpa"
    return fresh


def test_document_attention_only_where_it_is_exact(model):
    from transformers import AutoConfig, AutoModelForCausalLM
    assert not use_document_attention(_plain_sdpa(model), torch.device("cuda"))  # accelerators: varlen or a mask
    windowed = AutoConfig.for_model("mistral", vocab_size=64, hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                    sliding_window=16)
    windowed._attn_implementation = "sdpa"
    assert not use_document_attention(AutoModelForCausalLM.from_config(windowed), torch.device("cpu"))
    eager = _plain_sdpa(model)
    eager.config._attn_implementation = "eager"
    assert not use_document_attention(eager, torch.device("cpu"))
