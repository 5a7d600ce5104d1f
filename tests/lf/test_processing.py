"""Converters, processor budget and masks, packing, collator: pure functions with exact expected values."""
import numpy as np
import pytest
import torch

from fsdp2_core.data.lf.collator import SFTCollator, pad_multiple
from fsdp2_core.data.lf.converters import convert
from fsdp2_core.data.lf.dataset_info import parse_datasets
from fsdp2_core.data.lf.packing import greedy_knapsack, pack_batch, sample_budget
from fsdp2_core.data.lf.processor import IGNORE_INDEX as I
from fsdp2_core.data.lf.processor import (
    SupervisedOptions,
    encode_supervised,
    infer_seqlen,
)


def attr(entry):
    return parse_datasets(entry, ".")[0]


# ---- converters -------------------------------------------------------------------------------------------

def test_alpaca_columns_history_system():
    a = attr({"file_name": "x.json", "columns": {"prompt": "q", "query": "ctx", "response": "a", "history": "h",
                                                 "system": "sys"}})
    out = convert({"q": "Question", "ctx": "Context", "a": "Answer", "h": [["old q", "old a"]], "sys": "S"}, a)
    assert out["_error"] is None and out["_system"] == "S"
    assert out["_prompt"] == [{"role": "user", "content": "old q"}, {"role": "assistant", "content": "old a"},
                              {"role": "user", "content": "Question\nContext"}]
    assert out["_response"] == [{"role": "assistant", "content": "Answer"}]
    assert "missing column 'q'" in convert({"a": "x", "h": None}, a)["_error"]


def test_sharegpt_tags_and_bad_orders():
    a = attr({"file_name": "x.json", "formatting": "sharegpt", "columns": {"messages": "msgs"},
              "tags": {"role_tag": "role", "content_tag": "text", "user_tag": "u", "assistant_tag": "a"}})
    good = {"msgs": [{"role": "system", "text": "S"}, {"role": "u", "text": "hi"}, {"role": "a", "text": "yo"}]}
    out = convert(good, a)
    assert out["_system"] == "S" and out["_prompt"] == [{"role": "user", "content": "hi"}]
    assert out["_response"] == [{"role": "assistant", "content": "yo"}]
    assert "roles out of order" in convert({"msgs": [{"role": "a", "text": "x"},
                                                     {"role": "u", "text": "y"}]}, a)["_error"]
    assert "odd number" in convert({"msgs": [{"role": "u", "text": "x"}]}, a)["_error"]
    assert "missing column 'msgs'" in convert({"other": 1}, a)["_error"]


def test_openai_tool_calls_and_tool_replies():
    a = attr({"file_name": "x.json", "formatting": "openai", "columns": {"tools": "tools"}})
    rec = {"messages": [{"role": "user", "content": "weather?"},
                        {"role": "assistant", "content": "", "tool_calls": [
                            {"type": "function", "function": {"name": "w", "arguments": {"city": "P"}}}]},
                        {"role": "tool", "content": "21"}, {"role": "tool", "content": "22"},
                        {"role": "assistant", "content": "21 and 22"}], "tools": [{"name": "w"}]}
    out = convert(rec, a)
    assert out["_error"] is None
    assert [m["role"] for m in out["_prompt"]] == ["user", "function", "observation"]
    assert out["_prompt"][1]["content"] == '[{"name": "w", "arguments": {"city": "P"}}]'
    assert out["_prompt"][2]["content"] == "21\n</tool_response>\n<tool_response>\n22"
    assert out["_tools"] == '[{"name": "w"}]'


def test_openai_system_kept_as_given():
    """The openai converter keeps the system prompt as written (LLaMA-Factory appends "detailed thinking off",
    or a newline when there are tools: a convention of no model template here)."""
    a = attr({"file_name": "x.json", "formatting": "openai", "columns": {"tools": "tools"}})
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]
    assert convert({"messages": msgs}, a)["_system"] == "S"
    assert convert({"messages": msgs, "tools": [{"name": "w"}]}, a)["_system"] == "S"
    assert convert({"messages": msgs[1:]}, a)["_system"] == ""


# ---- processor --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src,tgt,cut,expected", [
    (10, 5, 100, (10, 5)),     # fits
    (100, 10, 50, (40, 10)),   # short response kept, prompt truncated
    (10, 100, 50, (10, 40)),   # short prompt kept, response truncated
    (60, 40, 50, (30, 20)),    # both long: in proportion
])
def test_infer_seqlen(src, tgt, cut, expected):
    assert infer_seqlen(src, tgt, cut) == expected


TURNS = [([1, 2, 3], [4, 5]), ([6, 7], [8, 9, 10])]


def test_prompt_masked_and_train_on_prompt():
    ids, labels, trunc = encode_supervised(TURNS, SupervisedOptions(100), False, 99)
    assert ids == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] and not trunc
    assert labels == [I, I, I, 4, 5, I, I, 8, 9, 10]
    _, labels, _ = encode_supervised(TURNS, SupervisedOptions(100, train_on_prompt=True), False, 99)
    assert labels == list(range(1, 11))


def test_mask_history_trains_last_turn_only():
    ids, labels, _ = encode_supervised(TURNS, SupervisedOptions(100, mask_history=True), False, 99)
    assert ids == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert labels == [I] * 7 + [8, 9, 10]
    # with a tight budget the last turn takes the budget first; the earlier turn gets what is left
    ids, labels, trunc = encode_supervised(TURNS, SupervisedOptions(6, mask_history=True), False, 99)
    assert ids == [1, 6, 7, 8, 9, 10] and labels == [I, I, I, 8, 9, 10] and trunc


def test_cutoff_shared_between_prompt_and_response_and_later_turns_cut():
    ids, labels, trunc = encode_supervised(TURNS, SupervisedOptions(6), False, 99)
    assert ids == [1, 2, 3, 4, 5, 6] and labels == [I, I, I, 4, 5, I] and trunc
    long = [(list(range(100)), list(range(100, 130)))]
    ids, labels, trunc = encode_supervised(long, SupervisedOptions(40), False, 99)
    assert ids == list(range(31)) + list(range(100, 109)) and trunc  # both long: shared in proportion (9 of 40)
    assert labels == [I] * 31 + list(range(100, 109))


def test_efficient_eos():
    ids, labels, _ = encode_supervised(TURNS, SupervisedOptions(100), True, 99)
    assert ids == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99]
    assert labels == [I, I, I, 4, 5, 99, I, 8, 9, 10, 99]  # the end of turn 0 is trained at turn 1's first token


# ---- packing and collator ---------------------------------------------------------------------------------

def test_greedy_knapsack():
    assert greedy_knapsack([5, 3, 8, 2, 7], 10) == [[8, 2], [7, 3], [5]]
    with pytest.raises(ValueError, match="does not fit"):
        greedy_knapsack([11], 10)


def test_pack_batch_packs_to_cutoff_minus_one_and_pads_to_cutoff():
    """LLaMA-Factory's convention: rows hold at most cutoff_len - 1 tokens and are padded to cutoff_len."""
    batch = {"input_ids": [[1] * 5, [2] * 3, [3] * 8, [4] * 2], "labels": [[1] * 5, [2] * 3, [3] * 8, [4] * 2],
             "_truncated": [0, 1, 0, 0]}
    out = pack_batch(batch, 10, pad_id=0)
    assert out["seq_lens"] == [[8], [5, 3], [2]]  # capacity 9: 8 + 2 would fill all 10
    assert out["input_ids"] == [[3] * 8 + [0] * 2, [1] * 5 + [2] * 3 + [0] * 2, [4] * 2 + [0] * 8]
    assert out["labels"][1] == [1] * 5 + [2] * 3 + [I, I]
    assert sum(out["_truncated"]) == 1
    assert sample_budget(10, packing=True) == 9 and sample_budget(10, packing=False) == 10


def test_collator_padding_labels_positions():
    c = SFTCollator(pad_token_id=0)
    b = c([{"input_ids": [5, 6, 7], "labels": [I, 6, 7]}, {"input_ids": [5] * 9, "labels": [5] * 9}])
    assert b["tokens"].shape == (2, 16) and "attention_mask" not in b
    assert b["tokens"][0].tolist() == [5, 6, 7] + [0] * 13
    assert b["labels"][0].tolist() == [6, 7] + [I] * 14  # shifted; padding -100
    assert b["loss_mask"][0].tolist() == [1, 1] + [0] * 14
    assert b["position_ids"][0].tolist() == list(range(16))
    assert pad_multiple(1) == 8 and pad_multiple(2) == 8 and pad_multiple(3) == 24 and pad_multiple(8) == 16
    assert SFTCollator(0, cp_size=3)([{"input_ids": [1] * 5, "labels": [1] * 5}])["tokens"].shape == (1, 24)


def test_neat_collator_boundaries_without_a_mask_and_no_cross_sample_labels():
    row = {"input_ids": [1, 2, 3, 4, 5], "labels": [1, 2, 3, 4, 5], "seq_lens": [3, 2]}
    b = SFTCollator(0, neat_packing=True)([row])
    assert b["position_ids"][0].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]  # padding: 0
    assert b["labels"][0].tolist() == [2, 3, I, 5, I, I, I, I]
    assert b["cu_seqlens"].tolist() == [0, 3, 5, 8]
    assert "attention_mask" not in b  # the boundaries reach attention from the positions (models/packed.py)


def test_packed_positions_restart_per_sample_padding_zero():
    """Packed rows (plain and neat): position ids 0.. per sample and 0 over the padding, as LLaMA-Factory's."""
    row = {"input_ids": [1, 2, 3, 4, 5, 0, 0], "labels": [1, 2, 3, 4, 5, I, I], "seq_lens": [3, 2]}
    plain = SFTCollator(0, packing=True)([row])
    assert plain["position_ids"][0].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    assert plain["labels"][0].tolist() == [2, 3, I, 5, I, I, I, I]
    assert plain["attention_mask"].tolist() == [[1] * 8]  # a key mask hiding nothing: attention crosses samples
    neat = SFTCollator(0, neat_packing=True)([row])
    assert neat["position_ids"][0].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    assert neat["cu_seqlens"].tolist() == [0, 3, 5, 8] and "attention_mask" not in neat
    unpacked = SFTCollator(0)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}])
    assert unpacked["position_ids"][0].tolist() == list(range(8)) and "attention_mask" not in unpacked


def _tiny_qwen3():
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("qwen3", vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128)
    cfg._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(cfg).eval()


def _engine_loss(model, batch):
    """The engine's loss call (train/step.py): a 4-D mask is inverted, a 2-D key mask passed as it is."""
    from fsdp2_core.train.loss import lm_loss_sums
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 4:
        mask = ~mask
    s, n = lm_loss_sums(model, batch["tokens"], batch["labels"], batch["loss_mask"],
                        position_ids=batch["position_ids"], attention_mask=mask)
    return float(s) / float(n)


@pytest.mark.parametrize("attention_core", [False, True])
def test_plain_packed_row_attends_across_samples(attention_core):
    """Plain packing restarts position ids yet keeps attention across samples (LLaMA-Factory's plain packing):
    the loss equals an explicit full causal mask with those positions, with transformers' attention and with
    the engine's attention core (what context parallelism runs), and differs from neat packing."""
    from fsdp2_core.models.attention import install_attention
    model = _tiny_qwen3()
    if attention_core:
        install_attention(model)
    rng = np.random.default_rng(1)
    ids = rng.integers(10, 400, size=14).tolist()
    row = {"input_ids": ids + [0, 0], "labels": ids + [I, I], "seq_lens": [6, 8]}
    with torch.no_grad():
        plain = SFTCollator(0, packing=True)([row])
        got = _engine_loss(model, plain)
        full_causal = dict(plain, attention_mask=~torch.tril(torch.ones(16, 16, dtype=torch.bool))[None, None])
        want = _engine_loss(model, full_causal)
        neat = _engine_loss(model, SFTCollator(0, neat_packing=True)([row]))
    assert abs(got - want) < 1e-6
    assert abs(got - neat) > 1e-4


def test_neat_packed_loss_equals_samples_one_by_one(tokenizer):
    """A neat-packed row gives the same token-weighted loss as its samples run alone (tiny Qwen3, engine loss)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from fsdp2_core.train.loss import lm_loss_sums
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("qwen3", vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg).eval()
    rng = np.random.default_rng(0)
    samples = []
    for n in (7, 12, 5):
        ids = rng.integers(10, 400, size=n).tolist()
        labels = [I] * (n // 3) + ids[n // 3:]
        samples.append({"input_ids": ids, "labels": labels})

    def loss_of(batch):
        mask = batch.get("attention_mask")
        if mask is not None and mask.dim() == 4:
            mask = ~mask
        s, n = lm_loss_sums(model, batch["tokens"], batch["labels"], batch["loss_mask"],
                            position_ids=batch["position_ids"], attention_mask=mask)
        return float(s), float(n)

    packed = {"input_ids": sum((s["input_ids"] for s in samples), []),
              "labels": sum((s["labels"] for s in samples), []),
              "seq_lens": [len(s["input_ids"]) for s in samples]}
    with torch.no_grad():
        s_pack, n_pack = loss_of(SFTCollator(0, neat_packing=True)([packed]))
        alone = [loss_of(SFTCollator(0)([s])) for s in samples]
        s_cross, _ = loss_of(SFTCollator(0, packing=True)([packed]))  # plain packing: attention crosses samples
    s_one, n_one = sum(a for a, _ in alone), sum(b for _, b in alone)
    assert n_pack == n_one
    assert abs(s_pack / n_pack - s_one / n_one) < 1e-5
    assert abs(s_cross / n_pack - s_one / n_one) > 1e-4  # the test can tell the difference
