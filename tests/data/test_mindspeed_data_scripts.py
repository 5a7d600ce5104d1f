"""MindSpeed-LLM's data scripts (examples/mcore/*/data_convert_*.sh) run through tools/preprocess_data.py.

Each argv below is a published script's `preprocess_data.py` command line with its input and tokenizer paths
replaced by local fixtures. The expected tokens are derived here from MindSpeed-LLM's rules (its templates.json
slots, encoded element by element; the 100000-token default cut; prompt labels -100; greedy packing into
seq_length - 1), independently of the code under test.
"""
import json
import os

import numpy as np
import pytest

from fsdp2_core.data.megatron.indexed_dataset import IndexedDataset
from fsdp2_core.data.mindspeed.instruction import IGNORE_INDEX, InstructionData
from tests.lf.lf_helpers import train_tokenizer
from tools import preprocess_data

QWEN3_USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
QWEN3_ASSISTANT = "{}<|im_end|>\n"
QWEN3_SYSTEM = "<|im_start|>system\n{}<|im_end|>\n"
EMPTY_THOUGHT = "<think>\n\n</think>\n\n"
LLAMA3_USER = ("<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n")

ALPACA = [{"instruction": f"Add {i} and {i}.", "input": "" if i % 2 else "Be brief.", "output": f"It is {2 * i}."}
          for i in range(9)]
CHATS = [{"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": f"hi {i}"},
                       {"role": "assistant", "content": f"hello {i}"}, {"role": "user", "content": "and?"},
                       {"role": "assistant", "content": "fine"}]} for i in range(4)]
TEXTS = [{"text": f"The sea is blue number {i}. " * (1 + i % 3)} for i in range(7)] + [{"text": ""}]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok"))
    train_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def tok(tok_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tok_dir)


def parquet(path, rows):
    import pandas as pd
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


def run(argv):
    preprocess_data.main(argv)


def enc(tok, text):
    return tok.encode(text, add_special_tokens=False) if text else []


def qwen3_alpaca(tok, record, thinking):
    """MindSpeed's qwen3 rendering of an alpaca record: (input_ids, labels)."""
    content = "\n".join(p for p in (record["instruction"], record["input"]) if p)
    source = enc(tok, QWEN3_USER.format(content))
    target = enc(tok, QWEN3_ASSISTANT.format(record["output"]))
    if thinking:
        target = enc(tok, EMPTY_THOUGHT) + target
    else:
        source = source + enc(tok, EMPTY_THOUGHT)
    return source + target, [IGNORE_INDEX] * len(source) + target


def rows_of(prefix):
    data = InstructionData(prefix)
    return [data[i] for i in range(len(data))]


def test_qwen3_alpaca_script_as_published(tmp_path, tok_dir, tok):
    """data_convert_qwen3_instruction.sh: no --seq-length (cut at 100000 tokens), --enable-thinking true."""
    long = {"instruction": "sea " * 120000, "input": "", "output": "ok"}
    src = parquet(tmp_path / "train-00000-of-00001.parquet", ALPACA + [long])
    os.makedirs(tmp_path / "finetune_dataset")
    prefix = str(tmp_path / "finetune_dataset" / "alpaca")
    run(["--input", src, "--tokenizer-name-or-path", tok_dir, "--output-prefix", prefix,
         "--handler-name", "AlpacaStyleInstructionHandler", "--tokenizer-type", "PretrainedFromHF", "--workers", "4",
         "--log-interval", "1000", "--enable-thinking", "true", "--prompt-type", "qwen3"])
    for field in ("input_ids", "attention_mask", "labels"):
        assert IndexedDataset(f"{prefix}_packed_{field}_document").dtype == np.int32
    rows = rows_of(prefix)
    assert len(rows) == len(ALPACA) + 1  # nothing dropped without --seq-length
    for record, row in zip(ALPACA, rows):
        ids, labels = qwen3_alpaca(tok, record, thinking=True)
        assert row["input_ids"].tolist() == ids and row["labels"].tolist() == labels
        assert (row["attention_mask"] == 1).all()
    # the long one: the shared cut keeps the response whole and the prompt to the 99999-token budget
    target = enc(tok, EMPTY_THOUGHT) + enc(tok, QWEN3_ASSISTANT.format("ok"))
    assert len(rows[-1]["input_ids"]) == 99999 and rows[-1]["labels"][-len(target):].tolist() == target


def test_enable_thinking_default_puts_the_thought_in_the_prompt(tmp_path, tok_dir, tok):
    src = parquet(tmp_path / "a.parquet", ALPACA[:2])
    prefix = str(tmp_path / "alpaca")
    run(["--input", src, "--tokenizer-name-or-path", tok_dir, "--output-prefix", prefix, "--handler-name",
         "AlpacaStyleInstructionHandler", "--tokenizer-type", "PretrainedFromHF", "--workers", "1",
         "--prompt-type", "qwen3"])
    for record, row in zip(ALPACA, rows_of(prefix)):
        ids, labels = qwen3_alpaca(tok, record, thinking=False)  # MindSpeed's default --enable-thinking is none
        assert row["input_ids"].tolist() == ids and row["labels"].tolist() == labels


def test_llama3_script_with_seq_length_map_keys_and_cache_flags(tmp_path, tok_dir, tok):
    """data_convert_llama3_instruction.sh (--seq-length 8192) with the published --map-keys, --overwrite-cache and
    --tokenizer-not-use-fast of other scripts; records renamed to other columns."""
    renamed = [{"q": r["instruction"], "ctx": r["input"], "a": r["output"]} for r in ALPACA]
    src = parquet(tmp_path / "a.parquet", renamed + [{"q": "no answer", "ctx": "", "a": None}])
    prefix = str(tmp_path / "alpaca")
    run(["--input", src, "--tokenizer-name-or-path", tok_dir, "--output-prefix", prefix,
         "--handler-name", "AlpacaStyleInstructionHandler", "--tokenizer-type", "PretrainedFromHF",
         "--tokenizer-not-use-fast", "--workers", "4", "--log-interval", "1000", "--overwrite-cache",
         "--prompt-type", "llama3", "--seq-length", "8192", "--map-keys",
         '{"prompt":"q","query":"ctx","response":"a"}'])
    rows = rows_of(prefix)
    bos, eot = tok.convert_tokens_to_ids("<|begin_of_text|>"), tok.convert_tokens_to_ids("<|eot_id|>")
    for record, row in zip(ALPACA, rows):
        content = "\n".join(p for p in (record["instruction"], record["input"]) if p)
        source = [bos] + enc(tok, LLAMA3_USER.format(content))
        target = enc(tok, record["output"]) + [eot]  # the assistant slot ends with the eos: llama3 makes it <|eot_id|>
        assert row["input_ids"].tolist() == source + target
        assert row["labels"].tolist() == [IGNORE_INDEX] * len(source) + target
    # a record without a text response is written as one empty turn, as MindSpeed-LLM writes it
    assert len(rows) == len(ALPACA) + 1
    empty_source = [bos] + enc(tok, LLAMA3_USER.format(""))
    assert rows[-1]["input_ids"].tolist() == empty_source + [eot]


def test_sharegpt_openai_keys_thinking_and_pack(tmp_path, tok_dir, tok):
    """SharegptStyleInstructionHandler with the role/content tags of the published --map-keys, unpacked and
    packed (--pack --seq-length N): packed rows hold whole samples, greedy by length, padded with the pad id."""
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    tags = ('{"messages":"messages", "tags":{"role_tag": "role","content_tag": "content","user_tag": "user",'
            '"assistant_tag": "assistant","system_tag": "system"}}')
    base = ["--input", str(src), "--tokenizer-name-or-path", tok_dir, "--handler-name",
            "SharegptStyleInstructionHandler", "--tokenizer-type", "PretrainedFromHF", "--workers", "4",
            "--prompt-type", "qwen3", "--enable-thinking", "true", "--map-keys", tags]
    run(base + ["--output-prefix", str(tmp_path / "plain")])
    plain = rows_of(str(tmp_path / "plain"))
    thought = enc(tok, EMPTY_THOUGHT)
    for i, row in enumerate(plain):
        s0 = enc(tok, QWEN3_SYSTEM.format("Be kind.")) + enc(tok, QWEN3_USER.format(f"hi {i}"))
        t0 = thought + enc(tok, QWEN3_ASSISTANT.format(f"hello {i}"))
        s1, t1 = enc(tok, QWEN3_USER.format("and?")), thought + enc(tok, QWEN3_ASSISTANT.format("fine"))
        assert row["input_ids"].tolist() == s0 + t0 + s1 + t1
        assert row["labels"].tolist() == [IGNORE_INDEX] * len(s0) + t0 + [IGNORE_INDEX] * len(s1) + t1
    lengths = [len(r["input_ids"]) for r in plain]
    seq = 2 * max(lengths) + 2  # two samples fit one row
    run(base + ["--output-prefix", str(tmp_path / "packed"), "--pack", "--seq-length", str(seq)])
    packed = rows_of(str(tmp_path / "packed"))
    pad = tok.convert_tokens_to_ids("<|im_end|>")  # qwen3 makes <|im_end|> the eos, and the pad is the eos
    assert len(packed) == len(knapsack_groups(lengths, seq - 1)) < len(plain)
    for row in packed:
        assert len(row["input_ids"]) == seq and (row["attention_mask"] == 1).all()
        trained = row["labels"] != IGNORE_INDEX
        last = int(np.nonzero(trained)[0][-1]) + 1
        assert (row["input_ids"][last:] == pad).all() and not trained[last:].any()
    packed_ids = [r["input_ids"].tolist() for r in packed]
    for r in plain:  # every sample appears whole in some row
        ids = r["input_ids"].tolist()
        assert any(contains(row, ids) for row in packed_ids)


def knapsack_groups(lengths, capacity):
    """Fill each row with the longest remaining sample that fits, until none fits (MindSpeed's greedy knapsack)."""
    left, groups = sorted(lengths, reverse=True), []
    while left:
        room, group = capacity, []
        for n in list(left):
            if n <= room:
                group.append(n)
                room -= n
                left.remove(n)
        groups.append(group)
    return groups


def contains(row, ids):
    return any(row[k:k + len(ids)] == ids for k in range(len(row) - len(ids) + 1))


def test_general_pretrain_handler_as_published(tmp_path, tok_dir, tok):
    """data_convert_*_pretrain.sh: GeneralPretrainHandler --json-keys text on parquet; with --append-eod."""
    src = parquet(tmp_path / "train-00000-of-00042.parquet", TEXTS)
    prefix = str(tmp_path / "enwiki")
    run(["--input", src, "--tokenizer-name-or-path", tok_dir, "--tokenizer-type", "PretrainedFromHF",
         "--handler-name", "GeneralPretrainHandler", "--output-prefix", prefix, "--json-keys", "text",
         "--workers", "4", "--log-interval", "1000", "--append-eod"])
    data = IndexedDataset(f"{prefix}_text_document")
    assert data.dtype == np.int32  # MindSpeed's builder keeps its int32 default
    texts = [r["text"] for r in TEXTS if r["text"]]  # a record without text is no document
    assert len(data) == len(texts) and len(data.document_indices) == len(texts) + 1
    for i, text in enumerate(texts):
        assert data[i].tolist() == tok(text).input_ids + [tok.eos_token_id]


def test_directory_input_reads_its_json_files(tmp_path, tok_dir, tok):
    folder = tmp_path / "multi_turn"
    folder.mkdir()
    (folder / "b.json").write_text(json.dumps(ALPACA[3:5]))
    (folder / "a.json").write_text(json.dumps(ALPACA[:3]))
    (folder / "README.md").write_text("not data")
    prefix = str(tmp_path / "alpaca")
    run(["--input", str(folder), "--tokenizer-name-or-path", tok_dir, "--output-prefix", prefix, "--handler-name",
         "AlpacaStyleInstructionHandler", "--tokenizer-type", "PretrainedFromHF", "--workers", "4",
         "--prompt-type", "qwen3"])
    rows = rows_of(prefix)
    assert [r["input_ids"].tolist() for r in rows] == [qwen3_alpaca(tok, r, False)[0] for r in ALPACA[:5]]


@pytest.mark.parametrize("handler, reason", [("PPOAlpacaStyleInstructionHandler", "reinforcement learning"),
                                             ("SharegptStylePairwiseHandler", "DPO"),
                                             ("AlpacaStylePairwiseHandler", "DPO")])
def test_pairwise_and_ppo_handlers_refused_with_the_reason(tmp_path, tok_dir, capsys, handler, reason):
    with pytest.raises(SystemExit):
        run(["--input", "x.json", "--tokenizer-name-or-path", tok_dir, "--output-prefix", str(tmp_path / "o"),
             "--workers", "4", "--tokenizer-type", "PretrainedFromHF", "--overwrite-cache", "--handler-name", handler,
             "--prompt-type", "llama3"])
    err = capsys.readouterr().err
    assert f"--handler-name {handler} is not supported" in err and reason in err


def test_pack_without_seq_length_is_refused(tmp_path, tok_dir, capsys):
    with pytest.raises(SystemExit):
        run(["--input", "x.json", "--tokenizer-name-or-path", tok_dir, "--output-prefix", str(tmp_path / "o"),
             "--workers", "1", "--tokenizer-type", "PretrainedFromHF", "--handler-name",
             "AlpacaStyleInstructionHandler", "--prompt-type", "qwen3", "--pack"])
    assert "--pack/--neat-pack need --seq-length" in capsys.readouterr().err


# --- MindSpeed-LLM's plain-slot --prompt-types (fsdp2_core/data/mindspeed/templates.py) ---
# Expected pieces below are MindSpeed-LLM's configs/finetune/templates.json strings, one encode per slot element
# as its templates.py does; BOS/EOS are the tokenizer's ids. One record: a system text, one history turn and the
# current turn (alpaca columns renamed with --map-keys, as the gemma2 script does for its history column).
BOS_, EOS_ = "BOS", "EOS"
THOUGHT = "<think>\n\n</think>\n\n"
RECORD = {"instruction": "Add 1 and 1.", "input": "", "output": "It is 2.", "system": "Be brief.",
          "histories": [["hi", "hello"]]}
Q, A = RECORD["instruction"], RECORD["output"]


def chatml(role, text):
    return f"<|im_start|>{role}\n{text}<|im_end|>\n"


CHATML_USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
# prompt type -> (turns as (prompt pieces, response pieces), efficient_eos, eos word, extra special tokens, argv)
PLAIN_TYPES = {
    "qwen": ([([chatml("system", "Be brief."), CHATML_USER.format("hi")], ["hello", EOS_]),
              (["\n", CHATML_USER.format(Q)], [A, EOS_])], False, "<|im_end|>", [], []),
    "llama2": ([([BOS_, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nhi [/INST]"], ["hello", EOS_]),
                ([BOS_, f"[INST] {Q} [/INST]"], [A, EOS_])], False, None, [], ["--overwrite-cache"]),
    "mistral": ([([BOS_, "Be brief.", "[INST] hi [/INST]"], ["hello", EOS_]), ([f"[INST] {Q} [/INST]"], [A, EOS_])],
                False, None, [], []),
    "mixtral": ([([BOS_, "Be brief.", "[INST] hi [/INST]"], ["hello", EOS_]), ([f"[INST] {Q} [/INST]"], [A, EOS_])],
                False, None, [], ["--overwrite-cache"]),
    "gemma": ([([BOS_, "Be brief.", "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"], ["hello"]),
               (["<end_of_turn>\n", f"<start_of_turn>user\n{Q}<end_of_turn>\n<start_of_turn>model\n"], [A])],
              True, None, [], []),
    "deepseek2-lite": ([([BOS_, "Be brief.\n\n", "User: hi\n\nAssistant:"], ["hello", EOS_]),
                        ([f"User: {Q}\n\nAssistant:"], [A, EOS_])], False, None, [], []),
    "deepseek3": ([([BOS_, "Be brief.", "<｜User｜>hi<｜Assistant｜>"], ["hello", EOS_]),
                   ([f"<｜User｜>{Q}<｜Assistant｜>"], [A, EOS_])], False, None, [],
                  ["--seq-length", "8192", "--tokenizer-not-use-fast"]),
    "baichuan2": ([(["Be brief.", "<reserved_106>hi<reserved_107>"], ["hello"]),
                   ([f"<reserved_106>{Q}<reserved_107>"], [A])], True, None, [], ["--overwrite-cache"]),
    "cpm": ([([BOS_, "Be brief.", "<用户>hi<AI>"], ["hello", EOS_]), ([f"<用户>{Q}<AI>"], [A, EOS_])],
            False, None, [], []),
    "intern2": ([([BOS_, chatml("system", "Be brief."), CHATML_USER.format("hi")], ["hello<|im_end|>\n"]),
                 ([CHATML_USER.format(Q)], [f"{A}<|im_end|>\n"])], False, None, ["<|im_end|>"],
                ["--tokenizer-not-use-fast"]),
    "plm": ([([chatml("system", "Be brief."), CHATML_USER.format("hi")], ["hello<|im_end|>\n"]),
             ([CHATML_USER.format(Q)], [f"{A}<|im_end|>\n"])], False, "<|endoftext|>", [], []),
    "bailing_mini": ([(["<role>SYSTEM</role>Be brief.<|role_end|>",
                        "<role>HUMAN</role>hi<|role_end|><role>ASSISTANT</role>"], ["hello<|role_end|>"]),
                      ([f"<role>HUMAN</role>{Q}<|role_end|><role>ASSISTANT</role>"], [f"{A}<|role_end|>"])],
                     True, None, ["<|endoftext|>"], []),
    # a reasoning template: without --enable-thinking the empty thought closes each prompt, untrained
    "glm4_moe": ([(["[gMASK]<sop>", "<|system|>\nBe brief.", "<|user|>\nhi<|assistant|>", THOUGHT], ["\nhello"]),
                  ([f"<|user|>\n{Q}<|assistant|>", THOUGHT], [f"\n{A}"])],
                 True, None, ["<|user|>", "<|observation|>"], ["--overwrite-cache"]),
}


def pieces_ids(tok, pieces):
    ids = []
    for piece in pieces:
        ids += [tok.bos_token_id] if piece == BOS_ else [tok.eos_token_id] if piece == EOS_ else enc(tok, piece)
    return ids


@pytest.mark.parametrize("prompt_type", sorted(PLAIN_TYPES))
def test_plain_prompt_types_render_as_mindspeed_llm(tmp_path, tok_dir, prompt_type):
    """Each published script's argv shape (AlpacaStyleInstructionHandler, its flags) on a record with a system text
    and a history turn; the tokens are MindSpeed-LLM's, slot element by slot element."""
    from transformers import AutoTokenizer
    turns, efficient_eos, eos_word, specials, extra = PLAIN_TYPES[prompt_type]
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps([RECORD]))
    prefix = str(tmp_path / "out")
    run(["--input", str(src), "--tokenizer-name-or-path", tok_dir, "--output-prefix", prefix, "--handler-name",
         "AlpacaStyleInstructionHandler", "--tokenizer-type", "PretrainedFromHF", "--workers", "4", "--log-interval",
         "1000", "--prompt-type", prompt_type, "--map-keys", '{"system":"system","history":"histories"}'] + extra)
    tok = AutoTokenizer.from_pretrained(tok_dir)  # MindSpeed's fix_model_tokenizer, done here by hand
    if eos_word:
        tok.add_special_tokens({"eos_token": eos_word})
    if specials:
        tok.add_special_tokens({"additional_special_tokens": specials})
    ids, labels = [], []
    for k, (prompt, response) in enumerate(turns):
        p, r = pieces_ids(tok, prompt), pieces_ids(tok, response)
        first_label = [tok.eos_token_id] if efficient_eos and k else [IGNORE_INDEX]  # a later prompt trains the eos
        ids += p + r
        labels += first_label + [IGNORE_INDEX] * (len(p) - 1) + r
    if efficient_eos:
        ids, labels = ids + [tok.eos_token_id], labels + [tok.eos_token_id]
    row, = rows_of(prefix)
    assert row["input_ids"].tolist() == ids and row["labels"].tolist() == labels


def test_glm4_moe_with_enable_thinking_trains_the_empty_thought(tmp_path, tok_dir):
    from transformers import AutoTokenizer
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps([{"instruction": Q, "input": "", "output": f"<think>\nsum\n</think>\n\n{A}"},
                               {"instruction": Q, "input": "", "output": A}]))
    for thinking in ("true", "false"):
        prefix = str(tmp_path / thinking)
        run(["--input", str(src), "--tokenizer-name-or-path", tok_dir, "--output-prefix", prefix, "--handler-name",
             "AlpacaStyleInstructionHandler", "--tokenizer-type", "PretrainedFromHF", "--workers", "1",
             "--prompt-type", "glm4_moe", "--enable-thinking", thinking])
        tok = AutoTokenizer.from_pretrained(tok_dir)
        tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|observation|>"]})
        prompt = enc(tok, "[gMASK]<sop>") + enc(tok, f"<|user|>\n{Q}<|assistant|>")
        with_thought, plain = rows_of(prefix)
        if thinking == "true":  # the data's thought kept; the empty one trained where there is none
            assert with_thought["input_ids"].tolist() == prompt + enc(tok, f"\n<think>\nsum\n</think>\n\n{A}") + \
                [tok.eos_token_id]
            assert plain["input_ids"].tolist() == prompt + enc(tok, THOUGHT) + enc(tok, f"\n{A}") + [tok.eos_token_id]
            assert plain["labels"].tolist()[len(prompt):len(prompt) + len(enc(tok, THOUGHT))] == enc(tok, THOUGHT)
        else:  # false: the data's thought removed, the empty one closes the (untrained) prompt
            expected = prompt + enc(tok, THOUGHT) + enc(tok, f"\n{A}") + [tok.eos_token_id]
            assert with_thought["input_ids"].tolist() == plain["input_ids"].tolist() == expected


def test_pretrain_scripts_without_a_handler(tmp_path, tok_dir, tok):
    """data_convert_gemma_pretrain.sh writes `--json-key completion` (argparse takes the abbreviation of
    --json-keys, in MindSpeed-LLM as here); the internlm scripts add --tokenizer-not-use-fast."""
    rows = [{"completion": f"The sea is blue number {i}."} for i in range(5)]
    src = tmp_path / "wiki.json"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, extra in (("gemma", ["--json-key", "completion"]),
                        ("internlm", ["--json-keys", "completion", "--tokenizer-not-use-fast"])):
        prefix = str(tmp_path / name)
        run(["--input", str(src), "--tokenizer-name-or-path", tok_dir, "--output-prefix", prefix, "--workers", "4",
             "--log-interval", "1000", "--tokenizer-type", "PretrainedFromHF"] + extra)
        data = IndexedDataset(f"{prefix}_completion_document")
        assert [data[i].tolist() for i in range(len(data))] == [enc(tok, r["completion"]) for r in rows]


def test_prompt_types_and_tokenizers_refused_with_the_reason(tmp_path, tok_dir, capsys):
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps([RECORD]))
    base = ["--input", str(src), "--output-prefix", str(tmp_path / "o"), "--handler-name",
            "AlpacaStyleInstructionHandler", "--workers", "1"]
    with pytest.raises(SystemExit, match="DeepSeek-V4's renderer"):
        run(base + ["--tokenizer-name-or-path", tok_dir, "--tokenizer-type", "PretrainedFromHF", "--prompt-type",
                    "deepseek4", "--enable-thinking", "true"])
    with pytest.raises(SystemExit):
        run(base + ["--tokenizer-model", "tekken.json", "--tokenizer-type", "MagistralTokenizer", "--prompt-type",
                    "magistral"])
    assert "--tokenizer-type MagistralTokenizer is not supported: MindSpeed-LLM's wrapper of mistral-common's " \
           "Tekken tokenizer" in capsys.readouterr().err
