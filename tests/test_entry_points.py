"""The training script a launch line starts, judged by what it trains (megatron_compat/entry_points.py)."""
import pytest

from megatron_compat.entry_points import DECODER_FLAGS, judge_entry

GPT = ["--num-layers", "24", "--hidden-size", "2048", "--num-attention-heads", "16", "--seq-length", "4096",
       "--swiglu", "--micro-batch-size", "1"]


@pytest.mark.parametrize("entry", ["pretrain_gpt.py", "/workspace/Megatron-LM/pretrain_gpt.py", "posttrain_gpt.py"])
def test_megatron_and_mindspeed_entries_are_taken_as_they_are(entry):
    judged = judge_entry(entry, [])
    assert (judged.translate_as, judged.note, judged.problem) == (entry.rsplit("/", 1)[-1], None, None)


@pytest.mark.parametrize("entry", ["pretrain_qwen.py", "pretrain_megatron_llama.py", "pretrain_gpt_with_dmc.py",
                                   "pretrain_llama.py", "/fork/examples/pretrain_yuan.py", "finetune_gpt.py"])
def test_fork_entries_training_a_decoder_are_gpt_style(entry):
    judged = judge_entry(entry, GPT + ["--use-mcore-models"])
    name = entry.rsplit("/", 1)[-1]
    assert (judged.translate_as, judged.problem) == ("pretrain_gpt.py", None)
    assert judged.note == (f"entry point {name} is not Megatron's pretrain_gpt.py; judged a GPT-style decoder by its "
                           f"flags ({', '.join(DECODER_FLAGS)} and no other family's), so it is converted as "
                           f"pretrain_gpt.py")


def test_fork_entry_with_a_stage_is_post_training():
    assert judge_entry("posttrain_qwen.py", GPT + ["--stage", "sft"]).translate_as == "posttrain_gpt.py"


@pytest.mark.parametrize("entry,extra,family", [
    ("pretrain_t5_fork.py", ["--encoder-num-layers", "12", "--decoder-num-layers", "12"], "T5 encoder-decoder"),
    ("pretrain_bert_fork.py", ["--bert-no-binary-head"], "BERT"),
    ("pretrain_vit.py", ["--img-h", "224", "--img-w", "224", "--patch-dim", "16"], "vision"),
    ("pretrain_llava.py", ["--vision-model-type", "clip"], "vision-language"),
])
def test_another_familys_flags_refuse_a_fork_entry(entry, extra, family):
    judged = judge_entry(entry, GPT + extra)
    assert judged.translate_as is None
    assert judged.problem.startswith(f"entry point {entry} trains a {family} model (it is given --")
    assert judged.problem.endswith("Use Megatron-LM for this model family")


@pytest.mark.parametrize("entry,family", [("pretrain_bert.py", "BERT"), ("pretrain_t5.py", "T5"),
                                          ("pretrain_vlm.py", "vision-language")])
def test_megatrons_other_families_are_refused_by_name_even_with_decoder_flags(entry, family):
    judged = judge_entry(entry, GPT)
    assert judged.translate_as is None and f"entry point {entry} trains a {family} model;" in judged.problem


def test_an_entry_that_is_not_a_script_is_refused():
    judged = judge_entry("master", GPT)
    assert judged.translate_as is None and judged.problem.startswith("entry point master is not a Python script")


def test_a_script_without_a_model_is_not_training():
    judged = judge_entry("preprocess_data.py", ["--input", "x.json", "--output-prefix", "x", "--tokenizer-type",
                                                "GPT2BPETokenizer", "--workers", "8"])
    assert judged.translate_as is None
    assert judged.problem.startswith("entry point preprocess_data.py does not describe a model to train (it is "
                                     "not given --num-layers, --hidden-size, --num-attention-heads")


@pytest.mark.parametrize("entry", ["pretrain_hybrid.py", "../../pretrain_mamba.py"])
@pytest.mark.parametrize("layers", [["--hybrid-layer-pattern", "M-M*"], ["--hybrid-override-pattern", "M-M*"],
                                    ["--is-hybrid-model"], ["--hybrid-attention-ratio", "0.25"]])
def test_megatrons_hybrid_entries_train_a_decoder(entry, layers):
    """pretrain_hybrid.py / pretrain_mamba.py: a decoder-only LM whose layers the pattern gives (nemotron_h)."""
    judged = judge_entry(entry, ["--hidden-size", "64"] + layers)
    name = entry.rsplit("/", 1)[-1]
    assert (judged.translate_as, judged.problem) == ("pretrain_gpt.py", None)
    assert judged.note == (f"entry point {name} trains Megatron's hybrid Mamba model, a decoder-only LM (Mamba2, "
                           "attention and MLP layers by its pattern): converted as pretrain_gpt.py with the nemotron_h "
                           "family")


def test_a_hybrid_entry_without_layers_is_refused_with_what_to_add():
    judged = judge_entry("pretrain_mamba.py", GPT)
    assert judged.translate_as is None
    assert "Megatron then makes every layer Mamba2" in judged.problem and "add --is-hybrid-model" in judged.problem


def test_a_fork_entry_with_a_hybrid_pattern_is_judged_by_its_decoder_flags():
    assert judge_entry("pretrain_my_mamba.py", GPT + ["--hybrid-override-pattern", "M-M-"]).translate_as == \
        "pretrain_gpt.py"


def test_pais_qwen3_next_entry_with_a_hybrid_pattern_is_refused():
    """Pai-Megatron-Patch's pretrain_qwen3_next.py builds Gated DeltaNet for the pattern's M: no nemotron_h Mamba2."""
    judged = judge_entry("pretrain_qwen3_next.py", GPT + ["--hybrid-override-pattern", "M-M*", "--is-hybrid-model"])
    assert judged.translate_as is None
    assert judged.problem.startswith("entry point pretrain_qwen3_next.py is given a hybrid layer pattern")
    assert judge_entry("pretrain_qwen3_next.py", GPT).translate_as == "pretrain_gpt.py"
