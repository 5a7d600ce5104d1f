"""MindSpeed-LLM instruction datasets: what our preprocessing writes (file names, dtypes, masks, packing),
and what the engine reads from them (split, order, cut, shifted targets, packed samples kept apart)."""
import os

import numpy as np
import pytest
import torch

from fsdp2_core.data.megatron.indexed_dataset import IndexedDataset
from fsdp2_core.data.mindspeed.instruction import (
    IGNORE_INDEX,
    InstructionCollator,
    InstructionData,
    InstructionDataset,
    cut_sample,
    legacy_split,
    sample_order,
    segments_from_eos,
    segments_from_ids,
)
from tests.lf.lf_helpers import ALPACA, SHAREGPT, write_json
from tests.posttrain.posttrain_helpers import instruction_data, preprocess


@pytest.fixture(scope="module")
def tok(tok_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tok_dir)


def test_alpaca_handler_writes_mindspeed_layout(tmp_path, tok_dir, tok):
    prefix = instruction_data(tmp_path, tok_dir, extra=["--enable-thinking", "true"])
    names = sorted(os.listdir(os.path.dirname(prefix)))
    assert names == sorted(f"alpaca_packed_{f}_document.{ext}" for f in ("input_ids", "attention_mask", "labels")
                           for ext in ("bin", "idx"))
    data = InstructionData(prefix)
    assert len(data) == len(ALPACA)
    for field in ("input_ids", "attention_mask", "labels"):
        assert IndexedDataset(f"{prefix}_packed_{field}_document").dtype == np.int32  # -100 needs a signed type
    item = data[0]
    ids, labels = item["input_ids"], item["labels"]
    assert (item["attention_mask"] == 1).all() and len(ids) == len(labels)
    # the prompt (template user turn) is ignored, the response (with the template's closing tokens) trained
    assert tok.decode(ids[labels == IGNORE_INDEX]) == (
        "<|im_start|>user\nWhat is 0 plus 0?\nAnswer briefly.<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(ids[labels != IGNORE_INDEX]) == "<think>\n\n</think>\n\n0 plus 0 is 0.<|im_end|>\n"
    assert (labels[labels != IGNORE_INDEX] == ids[labels != IGNORE_INDEX]).all()  # labels are unshifted


def test_sharegpt_handler_trains_every_assistant_turn(tmp_path, tok_dir, tok):
    prefix = instruction_data(tmp_path, tok_dir, "sg", SHAREGPT, "SharegptStyleInstructionHandler", seq=128,
                              extra=["--enable-thinking", "false", "--map-keys",
                                     '{"messages": "conversations", "system": "system"}'])
    item = InstructionData(prefix)[0]
    trained = tok.decode(item["input_ids"][item["labels"] != IGNORE_INDEX])
    assert trained == "hi 0<|im_end|>\nfine<|im_end|>\n"
    assert tok.decode(item["input_ids"]).startswith("<|im_start|>system\nBe brief.<|im_end|>\n"
                                                    "<|im_start|>user\nhello 0")


def test_too_long_samples_dropped_or_cut(tmp_path, tok_dir):
    records = ALPACA[:3] + [{"instruction": "long " * 80, "input": "", "output": "ok"}]
    plain = InstructionData(instruction_data(tmp_path / "a", tok_dir, records=records))
    assert len(plain) == 4  # qwen3's template cuts the conversation to seq_length - 1 tokens: kept
    assert len(plain[3]["input_ids"]) == 63
    appended = InstructionData(instruction_data(tmp_path / "c", tok_dir, records=records, extra=["--append-eod"]))
    assert len(appended) == 3  # the eod makes it seq_length tokens: MindSpeed drops a sample of seq_length or more
    neat = InstructionData(instruction_data(tmp_path / "b", tok_dir, records=records, extra=["--neat-pack"]))
    rows = [neat[i] for i in range(len(neat))]
    assert all(len(r["input_ids"]) == 64 for r in rows)  # packed rows are exactly seq_length
    assert sum(int(r["attention_mask"].max()) for r in rows) == 4  # the long one was cut, not dropped


def test_pack_and_neat_pack_rows(tmp_path, tok_dir, tok):
    alone = InstructionData(instruction_data(tmp_path / "a", tok_dir, seq=128))
    lengths = sorted(len(alone[i]["input_ids"]) for i in range(len(alone)))
    trained = sum(int((alone[i]["labels"] != IGNORE_INDEX).sum()) for i in range(len(alone)))
    for extra in (["--pack"], ["--neat-pack"]):
        data = InstructionData(instruction_data(tmp_path / extra[0][2:], tok_dir, seq=128, extra=extra))
        rows = [data[i] for i in range(len(data))]
        assert len(rows) < len(ALPACA) and all(len(r["input_ids"]) == 128 for r in rows)
        assert sum(int((r["labels"] != IGNORE_INDEX).sum()) for r in rows) == trained
        real = []
        for r in rows:
            assert r["labels"][-1] == IGNORE_INDEX  # at least one pad: rows hold up to seq_length - 1 tokens
            if extra == ["--neat-pack"]:
                n = int((r["attention_mask"] > 0).sum())
                pad = tok.convert_tokens_to_ids("<|im_end|>")  # qwen3: pad = eos
                assert (r["labels"][n:] == IGNORE_INDEX).all() and (r["input_ids"][n:] == pad).all()
                segs = segments_from_ids(r["attention_mask"])
                ids = r["attention_mask"][np.cumsum([0] + segs[:-1])]
                assert list(ids[:-1]) == list(range(1, len(segs))) and ids[-1] == 0  # 1-based sample index, 0 = pad
                real += segs[:-1]
            else:
                assert (r["attention_mask"] == 1).all()
        if extra == ["--neat-pack"]:
            assert sorted(real) == lengths  # every sample packed whole, once


def test_legacy_split_and_order():
    assert legacy_split("969,30,1", 1000) == [0, 969, 999, 1000]
    assert legacy_split("100,0,0", 12) == [0, 12, 12, 12]
    # 5 + round(2.5) + round(2.5) = 9: the shortfall moves every later bound
    assert legacy_split("2,1,1", 10) == [0, 6, 8, 10]
    order = sample_order(10, 5, 12, seed=7, shuffle=True)
    assert len(order) == 15  # whole epochs until 12 samples are covered
    rng = np.random.RandomState(7)
    expected = []
    for _ in range(3):
        epoch = np.arange(10, 15)
        rng.shuffle(epoch)
        expected += epoch.tolist()
    assert order.tolist() == expected
    assert sample_order(0, 4, 6, seed=7, shuffle=False).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_padded_samples_top_each_epoch_up_to_whole_global_batches_from_index_0():
    """MindSpeed's --padded-samples (_build_sequential_idx): an epoch of 5 sequences from 10 with global batch 4 is
    10..14 then 0, 1, 2 (from index 0, not from the split's start), shuffled as one epoch."""
    order = sample_order(10, 5, 12, seed=7, shuffle=True, pad_to_batch=4)
    rng = np.random.RandomState(7)
    expected = []
    for _ in range(2):  # 8 per epoch: two epochs cover 12
        epoch = np.append(np.arange(10, 15), np.arange(0, 3))
        rng.shuffle(epoch)
        expected += epoch.tolist()
    assert order.tolist() == expected
    assert sample_order(0, 4, 6, seed=7, shuffle=False, pad_to_batch=4).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert sample_order(0, 5, 6, seed=7, shuffle=False, pad_to_batch=3).tolist() == [0, 1, 2, 3, 4, 0]


def test_padded_samples_flag_and_its_need_for_a_global_batch():
    from fsdp2_core.data.mindspeed.instruction import _padded_to
    from megatron_compat.translate import translate
    argv = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
            "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
            "--data-path /data/alpaca --is-instruction-dataset --tokenizer-type NullTokenizer --vocab-size 100 "
            "--padded-samples").split()
    result = translate(argv, world_size=1)
    assert result.ok, result.problems()
    cfg = result.config
    assert cfg.data.padded_samples and _padded_to(cfg.data, cfg.training) == 16
    cfg.training.global_batch_size = None
    with pytest.raises(ValueError, match="set training.global_batch_size"):
        _padded_to(cfg.data, cfg.training)


def test_cut_sample_shares_the_budget_per_turn():
    # two turns: prompt 6 + response 4, prompt 5 + response 5
    labels = np.array([-100] * 6 + [1, 2, 3, 4] + [-100] * 5 + [5, 6, 7, 8, 9])
    ids = np.where(labels == -100, 100 + np.arange(len(labels)), labels)
    out_ids, out_labels = cut_sample(ids, labels, 14)
    assert len(out_ids) == 14 and len(out_labels) == 14
    assert out_labels[:10].tolist() == labels[:10].tolist()  # the first turn fits whole
    assert out_labels[10:].tolist() == [-100, -100, 5, 6]  # the second gets the 4 tokens left, half and half
    same_ids, _ = cut_sample(ids, labels, 40)
    assert same_ids is ids


def test_collator_shifts_targets_and_keeps_packed_samples_apart():
    a = {"input_ids": np.array([1, 2, 3, 9]), "labels": np.array([-100, -100, 3, 9])}
    b = {"input_ids": np.array([4, 5, 9, 6, 7, 9]), "labels": np.array([-100, 5, 9, -100, 7, 9]), "seq_lens": [3, 3]}
    batch = InstructionCollator(pad_id=0, multiple_of=8)([a, b])
    assert batch["tokens"].shape == (2, 8)
    assert batch["labels"][0].tolist() == [-100, 3, 9, -100, -100, -100, -100, -100]
    assert batch["labels"][1].tolist() == [5, 9, -100, 7, 9, -100, -100, -100]  # shift over the row
    assert batch["loss_mask"].sum() == 6
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    blocked = batch["attention_mask"][1, 0]
    assert not blocked[4, 3] and blocked[3, 2] and blocked[2, 3]  # no attention across samples, causal inside
    assert batch["position_ids"][0].tolist()[:4] == [0, 1, 2, 3] and not batch["attention_mask"][0, 0, 3, :4].any()


def test_segments_from_eos():
    assert segments_from_eos(np.array([5, 9, 6, 7, 9, 0, 0]), 9) == [2, 3, 2]
    assert segments_from_eos(np.array([5, 6, 9]), 9) == [3]


def test_neat_packed_rows_compute_what_samples_compute_alone(tmp_path, tok_dir, tok):
    """A neat-packed row's token losses equal those of its samples run one by one (no cross-attention)."""
    from transformers import AutoModelForCausalLM

    from fsdp2_core.train.loss import install_loss
    from tests.posttrain.posttrain_helpers import tiny_qwen3
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3(str(tmp_path / "hf"))).eval()
    install_loss(model)
    plain = InstructionData(instruction_data(tmp_path / "a", tok_dir, seq=128))
    neat = InstructionData(instruction_data(tmp_path / "b", tok_dir, seq=128, extra=["--neat-pack"]))
    collate = InstructionCollator(pad_id=0)

    def loss_sum(dataset, index):
        batch = collate([dataset[index]])
        mask = batch.get("attention_mask")
        with torch.no_grad():
            s, n = model.lm_loss(batch["tokens"], batch["labels"], batch["loss_mask"],
                                 position_ids=batch["position_ids"],
                                 attention_mask=None if mask is None else ~mask)
        return float(s), float(n)

    alone = InstructionDataset(plain, np.arange(len(plain)), 128, collate)
    packed = InstructionDataset(neat, np.arange(len(neat)), 128, collate,
                                separate=True, neat=True, eos_id=tok.eos_token_id)
    total_alone = np.sum([loss_sum(alone, i) for i in range(len(plain))], axis=0)
    total_packed = np.sum([loss_sum(packed, i) for i in range(len(neat))], axis=0)
    assert total_packed[1] == total_alone[1]  # the same trained tokens
    assert total_packed[0] == pytest.approx(total_alone[0], rel=1e-5)
    cross = InstructionDataset(neat, np.arange(len(neat)), 128, collate)  # packed without separation attends across
    assert np.sum([loss_sum(cross, i) for i in range(len(neat))], axis=0)[0] != pytest.approx(total_alone[0], rel=1e-5)


def test_preprocess_refuses_unknown_prompt_type_and_handler(tmp_path, tok_dir):
    src = write_json(str(tmp_path / "a.json"), ALPACA)
    base = ["--input", src, "--output-prefix", str(tmp_path / "x"), "--seq-length", "64", "--tokenizer-type",
            "PretrainedFromHF", "--tokenizer-name-or-path", tok_dir, "--workers", "1"]
    with pytest.raises(SystemExit) as exc:
        preprocess(base + ["--handler-name", "AlpacaStyleInstructionHandler", "--prompt-type", "chatglm3"])
    assert "chatglm3" in str(exc.value) and "qwen3" in str(exc.value)
    with pytest.raises(SystemExit):
        preprocess(base + ["--handler-name", "AlpacaStylePairwiseHandler", "--prompt-type", "qwen3"])
