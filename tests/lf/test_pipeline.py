"""build_sft_datasets end to end on small local files: sources, formats, bad input, mixing, splits, caching."""
import json
import logging
import os
import subprocess
import sys

import pytest

from fsdp2_core.data.lf import build_sft_datasets
from fsdp2_core.data.lf.dataset_info import parse_datasets
from fsdp2_core.data.lf.loader import load_raw
from tests.lf.lf_helpers import ALPACA, SHAREGPT, data_config, write_json, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture()
def ddir(tmp_path):
    write_json(tmp_path / "alpaca.json", ALPACA)
    write_jsonl(tmp_path / "sg.jsonl", SHAREGPT)
    write_json(tmp_path / "dataset_info.json", {
        "alp": {"file_name": "alpaca.json"},
        "sg": {"file_name": "sg.jsonl", "formatting": "sharegpt",
               "columns": {"messages": "conversations", "system": "system"}},
        "hub": {"hf_hub_url": "someone/some_data"}})
    return tmp_path


def rows(ds):
    return [ds[i] for i in range(len(ds))]


def test_names_inline_and_missing_names(ddir, tokenizer):
    train, valid, test = build_sft_datasets(data_config(ddir, dataset="alp, sg"), tokenizer)
    assert len(train) == 18 and valid is None and test is None
    inline = data_config(ddir, dataset={"file_name": str(ddir / "alpaca.json"), "formatting": "alpaca"})
    assert len(build_sft_datasets(inline, tokenizer)[0]) == 12
    with pytest.raises(ValueError) as e:
        build_sft_datasets(data_config(ddir, dataset="alp,nope"), tokenizer)
    assert "nope" in str(e.value) and "alp, hub, sg" in str(e.value)


def test_file_resolution_dataset_dir_then_cwd(ddir, tmp_path_factory, monkeypatch, caplog):
    other = tmp_path_factory.mktemp("cwd")
    write_json(other / "local.json", ALPACA[:3])
    monkeypatch.chdir(other)
    caplog.set_level(logging.INFO)
    attr = parse_datasets({"file_name": "local.json"}, str(ddir))[0]
    assert len(load_raw(attr, str(ddir))) == 3  # not in dataset_dir: found relative to the working directory
    assert f"reading {other / 'local.json'}" in caplog.text
    write_json(ddir / "local.json", ALPACA[:5])
    assert len(load_raw(attr, str(ddir))) == 5  # dataset_dir wins
    assert f"reading {ddir / 'local.json'}" in caplog.text
    with pytest.raises(ValueError, match="not found; tried"):
        load_raw(parse_datasets({"file_name": "absent.json"}, str(ddir))[0], str(ddir))


def test_hub_fails_offline(ddir, tokenizer):
    with pytest.raises(ValueError, match="hf_hub .*offline"):
        build_sft_datasets(data_config(ddir, dataset="hub"), tokenizer)


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "parquet", "arrow", "folder"])
def test_file_types(tmp_path, tokenizer, kind):
    import datasets
    ds = datasets.Dataset.from_list(ALPACA[:4])
    path = tmp_path / f"data.{kind}"
    if kind == "json":
        write_json(path, ALPACA[:4])
    elif kind == "jsonl":
        write_jsonl(path, ALPACA[:4])
    elif kind == "csv":
        ds.to_csv(str(path))
    elif kind == "parquet":
        ds.to_parquet(str(path))
    elif kind == "arrow":
        ds.save_to_disk(str(tmp_path / "saved"))
        path = next((tmp_path / "saved").glob("*.arrow"))
    else:
        path.mkdir()
        write_jsonl(path / "a.jsonl", ALPACA[:2])
        write_jsonl(path / "b.jsonl", ALPACA[2:4])
    train, _, _ = build_sft_datasets(data_config(tmp_path, dataset={"file_name": str(path)}), tokenizer)
    assert len(train) == 4


def test_txt_file(tmp_path):
    (tmp_path / "a.txt").write_text("line one\nline two\n")
    raw = load_raw(parse_datasets({"file_name": "a.txt"}, str(tmp_path))[0], str(tmp_path))
    assert raw["text"] == ["line one", "line two"]


def test_bad_records_dropped_with_count_and_reasons(tmp_path, tokenizer, caplog):
    recs = SHAREGPT[:3] + [{"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
                           {"conversations": [{"from": "human", "value": "only a question"}]}, {"other": 1},
                           {"conversations": [{"from": "human", "value": "q"},
                                              {"from": "function_call", "value": "not json"}]}]
    write_jsonl(tmp_path / "bad.jsonl", recs)
    caplog.set_level(logging.INFO)
    cfg = data_config(tmp_path, dataset={"file_name": "bad.jsonl", "formatting": "sharegpt"})
    train, _, _ = build_sft_datasets(cfg, tokenizer)
    assert len(train) == 3
    # one warning line per step: the count, every dropped record named by dataset and index, the reasons
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "dropped" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("dataset inline: dropped 3 of 7 records that do not fit the sharegpt format: "
                               "inline#3, inline#4, inline#5; reasons: inline#3: roles out of order")
    assert "inline#4: odd number of messages" in lines[0] and "inline#5: column 'conversations' is NoneType" in lines[0]
    assert lines[1].startswith("dataset train: dropped 1 of 4 records that do not fit template qwen3: inline#6; "
                               "reasons: inline#6: ValueError: function message is not JSON")


def test_long_samples_truncated_not_dropped(ddir, tokenizer, caplog):
    caplog.set_level(logging.INFO)
    train, _, _ = build_sft_datasets(data_config(ddir, dataset="sg", cutoff_len=24), tokenizer)
    assert len(train) == 6 and all(len(r["input_ids"]) <= 24 for r in rows(train))
    assert "6 of 6 samples were longer than 24 tokens (cutoff_len) and were truncated" in caplog.text


def test_masks_in_the_pipeline(ddir, tokenizer):
    train, _, _ = build_sft_datasets(data_config(ddir, dataset="sg", mask_history=True, cutoff_len=512), tokenizer)
    r = train[0]
    trained = tokenizer.decode([t for t, l in zip(r["input_ids"], r["labels"]) if l != -100])
    assert trained == "<think>\n\n</think>\n\nfine<|im_end|>\n"  # the last turn only
    train, _, _ = build_sft_datasets(data_config(ddir, dataset="sg", train_on_prompt=True, cutoff_len=512), tokenizer)
    assert all(l != -100 for l in train[0]["labels"])


def test_mixing_strategies(ddir, tokenizer):
    concat = build_sft_datasets(data_config(ddir, dataset="alp,sg"), tokenizer)[0]
    under = build_sft_datasets(data_config(ddir, dataset="alp,sg", mix_strategy="interleave_under",
                                           interleave_probs="0.5,0.5"), tokenizer)[0]
    over = build_sft_datasets(data_config(ddir, dataset="alp,sg", mix_strategy="interleave_over",
                                          interleave_probs="0.5,0.5"), tokenizer)[0]
    assert len(concat) == 18
    assert len(under) < 18 < len(over)
    with pytest.raises(ValueError, match="sum to 1"):
        build_sft_datasets(data_config(ddir, dataset="alp,sg", mix_strategy="interleave_under",
                                       interleave_probs="0.5,0.6"), tokenizer)


def test_max_samples_val_size_eval_dataset(ddir, tokenizer):
    train, valid, _ = build_sft_datasets(data_config(ddir, dataset="alp,sg", max_samples=4), tokenizer)
    assert len(train) == 8
    train, valid, _ = build_sft_datasets(data_config(ddir, dataset="alp", val_size=0.25), tokenizer)
    assert (len(train), len(valid)) == (9, 3)
    train, valid, _ = build_sft_datasets(data_config(ddir, dataset="alp", val_size=5), tokenizer)
    assert (len(train), len(valid)) == (7, 5)
    train, valid, _ = build_sft_datasets(data_config(ddir, dataset="alp", eval_dataset="sg"), tokenizer)
    assert (len(train), len(valid)) == (12, 6)
    train, valid, _ = build_sft_datasets(data_config(ddir, dataset="alp", eval_dataset="alp,sg",
                                                     eval_on_each_dataset=True), tokenizer)
    assert {k: len(v) for k, v in valid.items()} == {"alp": 12, "sg": 6}


def test_streaming(ddir, tokenizer):
    cfg = data_config(ddir, dataset="alp", streaming=True, buffer_size=4, val_size=3)
    train, valid, _ = build_sft_datasets(cfg, tokenizer, stream_length=20)
    assert len(train) == 20 and len(list(iter(train))) == 9 and len(list(iter(valid))) == 3
    assert train[0]["input_ids"] and train[10]["input_ids"] == train[1]["input_ids"]  # a second pass of 9
    seen = {tuple(train[i]["input_ids"]) for i in range(9)} | {tuple(r["input_ids"]) for r in valid}
    assert len(seen) == 12
    with pytest.raises(ValueError, match="integer val_size"):
        build_sft_datasets(_streaming_fraction(ddir), tokenizer)


def _streaming_fraction(ddir):
    cfg = data_config(ddir, dataset="alp", streaming=True)
    cfg.data.val_size = 0.5  # validate() refuses this; the builder refuses it too
    return cfg


def test_packing_in_pipeline(ddir, tokenizer):
    plain = build_sft_datasets(data_config(ddir, dataset="alp,sg", cutoff_len=128), tokenizer)[0]
    packed = build_sft_datasets(data_config(ddir, dataset="alp,sg", cutoff_len=128, neat_packing=True), tokenizer)[0]
    assert len(packed) < len(plain)
    # every sample's tokens, rows of at most cutoff_len - 1 of them padded to exactly cutoff_len (LLaMA-Factory's rows)
    assert sum(sum(r["seq_lens"]) for r in rows(packed)) == sum(len(r["input_ids"]) for r in rows(plain))
    assert all(len(r["input_ids"]) == 128 and sum(r["seq_lens"]) <= 127 for r in rows(packed))
    assert all(r["input_ids"][sum(r["seq_lens"]):] == [tokenizer.pad_token_id] * (128 - sum(r["seq_lens"]))
               for r in rows(packed))
    batch = packed.collate_fn([packed[0], packed[1]])
    assert batch["tokens"].shape[-1] % 8 == 0 and "attention_mask" not in batch  # boundaries from positions
    assert int(batch["cu_seqlens"][-1]) == batch["tokens"].numel()


def test_workers_and_batch_size_same_result(ddir, tokenizer):
    a = build_sft_datasets(data_config(ddir, dataset="alp,sg"), tokenizer)[0]
    b = build_sft_datasets(data_config(ddir, dataset="alp,sg", preprocessing_num_workers=2,
                                       preprocessing_batch_size=5, overwrite_cache=True), tokenizer)[0]
    assert rows(a) == rows(b)


def test_tokenized_path_saved_then_loaded(ddir, tokenizer, caplog):
    path = str(ddir / "tokenized")
    first = build_sft_datasets(data_config(ddir, dataset="alp", val_size=2, tokenized_path=path), tokenizer)
    assert os.path.isdir(path)
    caplog.set_level(logging.INFO)
    write_json(ddir / "alpaca.json", ALPACA[:2])  # changed data is not read again
    second = build_sft_datasets(data_config(ddir, dataset="alp", val_size=2, tokenized_path=path), tokenizer)
    assert "loading the tokenized dataset from" in caplog.text
    assert rows(first[0]) == rows(second[0]) and rows(first[1]) == rows(second[1])
    third = build_sft_datasets(data_config(ddir, dataset="alp", val_size=1, tokenized_path=path, overwrite_cache=True),
                               tokenizer)
    assert len(third[0]) == 1


@pytest.mark.subprocess
def test_inspect_data_tool(ddir, tokenizer_dir, tmp_path):
    import yaml
    cfg = {"model": {"architecture": {"model_type": "qwen3", "vocab_size": 512},
                     "tokenizer_name_or_path": tokenizer_dir},
           "data": {"dataset": "alp,sg", "dataset_dir": str(ddir), "template": "qwen3", "cutoff_len": 64, "val_size": 2,
                    "data_manager_type": "lf"},
           "training": {"output_dir": str(tmp_path / "out"), "max_steps": 1, "stage": "sft"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=ROOT, HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "inspect_data.py"), str(tmp_path / "c.yaml"),
                           "--num", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "##### split train #####" in out and "##### split validation #####" in out
    assert out.count("=== sample ") == 4
    assert "[[<think>\n\n</think>\n\n" in out and "<|im_end|>\n]]" in out  # trained spans marked
    assert "<|im_start|>user\n" in out.split("=== sample 0")[1].split("[[")[0]  # the prompt is outside the marks
    assert "split train: 16 rows, 16 samples," in out and "trained tokens" in out and "truncated" in out


# ---- bad input: the file, the line, the columns, and what to do instead ----------------------------------

GOOD = {"instruction": "What is 1 plus 1?", "input": "", "output": "2"}


def _bad_line_file(tmp_path):
    with open(tmp_path / "bad.jsonl", "w") as f:
        f.write(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")
        f.write('{"instruction": "x", "output": "y"} trailing\n')
        f.write(json.dumps(GOOD) + "\n" + "[1, 2]\n" + json.dumps(GOOD) + "\n")
    return "bad.jsonl"


def test_invalid_json_line_stops_naming_file_and_line(tmp_path, tokenizer):
    name = _bad_line_file(tmp_path)
    with pytest.raises(ValueError) as e:
        build_sft_datasets(data_config(tmp_path, dataset={"file_name": name}), tokenizer)
    msg = str(e.value)
    assert f"{tmp_path / name} (line 3: not valid JSON (Extra data at column 37), line 5: a JSON list, not an object)" \
        in msg
    assert "2 lines of its data are not a JSON object" in msg and "data.skip_invalid_lines: true" in msg


def test_invalid_json_lines_skipped_and_counted_when_asked(tmp_path, tokenizer, caplog):
    name = _bad_line_file(tmp_path)
    caplog.set_level(logging.WARNING)
    train, _, _ = build_sft_datasets(data_config(tmp_path, dataset={"file_name": name}, skip_invalid_lines=True),
                                     tokenizer)
    assert len(train) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"dataset inline: skipped 2 invalid JSON lines (skip_invalid_lines): {tmp_path / name} "
                        "(line 3: not valid JSON (Extra data at column 37), line 5: a JSON list, not an object)"]


def test_invalid_json_line_in_a_stream(tmp_path, tokenizer, caplog):
    name = _bad_line_file(tmp_path)
    cfg = data_config(tmp_path, dataset={"file_name": name}, streaming=True)
    with pytest.raises(ValueError, match=r"bad.jsonl line 3 is not valid JSON \(Extra data at column 37\); fix"):
        list(iter(build_sft_datasets(cfg, tokenizer, stream_length=4)[0]))
    cfg = data_config(tmp_path, dataset={"file_name": name}, streaming=True, skip_invalid_lines=True)
    assert len(list(iter(build_sft_datasets(cfg, tokenizer, stream_length=4)[0]))) == 4
    assert "skipped invalid JSON line" in caplog.text and "bad.jsonl:5 (a JSON list, not an object)" in caplog.text


def test_invalid_json_document_names_line_and_column(tmp_path, tokenizer):
    (tmp_path / "doc.json").write_text("[\n" + json.dumps(GOOD) + ",\n" + json.dumps(GOOD) + "\n]x\n")
    with pytest.raises(ValueError, match=r"doc.json is not valid JSON \(line 4, column 2: Extra data\)"):
        build_sft_datasets(data_config(tmp_path, dataset={"file_name": "doc.json"}), tokenizer)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json"])
@pytest.mark.parametrize("streaming", [False, True])
def test_empty_data_file_is_named(tmp_path, tokenizer, name, streaming):
    (tmp_path / name).write_text("")
    with pytest.raises(ValueError, match=rf"dataset 'inline': data file .*{name} holds no records \(it is empty\)"):
        build_sft_datasets(data_config(tmp_path, dataset={"file_name": name}, streaming=streaming), tokenizer,
                           stream_length=4)


def test_records_without_the_entry_columns(tmp_path, tokenizer):
    write_json(tmp_path / "qa.json", [{"q": "a", "a": "b"}, {"q": "c", "a": "d"}])
    write_json(tmp_path / "dataset_info.json", {"qa": {"file_name": "qa.json"},
                                                "qa_sys": {"file_name": "qa.json", "columns": {
                                                    "prompt": "q", "response": "a", "system": "sys"}}})
    with pytest.raises(ValueError) as e:
        build_sft_datasets(data_config(tmp_path, dataset="qa"), tokenizer)
    assert str(e.value) == (
        f"dataset 'qa' ({tmp_path / 'qa.json'}): its records have no column 'instruction' (prompt), 'output' "
        "(response); the dataset_info entry (formatting alpaca) expects columns {prompt: 'instruction', response: "
        "'output'}, the records have ['a', 'q']. Name the records' columns under \"columns\" in the entry (or fix "
        "the formatting)")
    with pytest.raises(ValueError, match=r"no column 'sys' \(system\)"):
        build_sft_datasets(data_config(tmp_path, dataset="qa_sys"), tokenizer)


def test_every_record_dropped_is_an_error(tmp_path, tokenizer):
    write_jsonl(tmp_path / "sg.jsonl", [{"conversations": [{"from": "gpt", "value": "x"}]}] * 3)
    with pytest.raises(ValueError, match=r"dataset 'inline' \(.*sg.jsonl\): every one of its 3 records was dropped as "
                                         r"not fitting the sharegpt format, e.g. inline#0: roles out of order"):
        build_sft_datasets(data_config(tmp_path, dataset={"file_name": "sg.jsonl", "formatting": "sharegpt"}),
                           tokenizer)


def test_reasoning_with_tools_packs(tmp_path, tokenizer):
    """Reasoning-with-tools records (thoughts before calls, tool replies), packed in small write batches whose
    first holds only dropped records: no raw exception, and only the bad record is dropped."""
    call = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    good = {"conversations": [{"from": "human", "value": "Weather in Paris?"},
                              {"from": "function_call", "value": "<think>\nlook it up\n</think>\n\n" + call},
                              {"from": "observation", "value": '{"temp": 21}'},
                              {"from": "gpt", "value": "<think>\nsay it\n</think>\n\nIt is 21 degrees."}],
            "tools": json.dumps([{"name": "get_weather", "description": "Weather of a city",
                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])}
    bad = dict(good, conversations=[good["conversations"][0], {"from": "function_call", "value": "not json"}])
    write_jsonl(tmp_path / "rt.jsonl", [bad] + [good] * 5)
    entry = {"file_name": "rt.jsonl", "formatting": "sharegpt",
             "columns": {"messages": "conversations", "tools": "tools"}}
    for template in ("qwen3", "gpt_oss", "llama3"):
        cfg = data_config(tmp_path, dataset=entry, template=template, neat_packing=True, cutoff_len=512,
                          preprocessing_batch_size=1)
        train, _, _ = build_sft_datasets(cfg, tokenizer)
        assert sum(len(r["seq_lens"]) for r in rows(train)) == 5
