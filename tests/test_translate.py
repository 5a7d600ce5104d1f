"""Megatron flags -> canonical config: the mapping table, dialects, batch and step arithmetic, bad input."""
import json

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from fsdp2_core.config import ConfigError
from megatron_compat.cli import check_model_path
from megatron_compat.reverse import to_megatron
from tests.translate_helpers import ok, refused

BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
        "--data-path /data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 100").split()


# --- every row of the Megatron mapping table in fsdp2_parameters.md ---
def test_mapping_table_rows(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    argv = BASE + ["--load", str(hf), "--tokenizer-name-or-path", "/tok", "--workers", "3", "--pack",
                   "--tensor-model-parallel-size", "2", "--expert-model-parallel-size", "2",
                   "--context-parallel-size", "2", "--context-parallel-algo", "ulysses_cp_algo",
                   "--recompute-granularity", "full", "--recompute-method", "uniform",
                   "--no-shuffle", "--lr-decay-style", "cosine", "--lr-warmup-fraction", "0.1", "--save-interval", "50",
                   "--log-interval", "5"]
    _, cfg = ok(argv, world_size=8)
    assert cfg.model.model_name_or_path == str(hf)
    assert cfg.model.tokenizer_name_or_path == "/tok"
    assert cfg.data.dataset == "/data/corpus_text_document" and cfg.data.data_manager_type == "mg"
    assert cfg.data.cutoff_len == 32
    assert cfg.data.preprocessing_num_workers == 3
    assert cfg.data.packing is True
    assert (cfg.parallel.tp_size, cfg.parallel.ep_size, cfg.parallel.cp_size) == (2, 2, 2)
    assert cfg.parallel.cp_type == "ulysses"
    # GPT-2's layers are transformer.h.N: full recompute and the FSDP units name them
    assert cfg.parallel.recompute is True and cfg.parallel.recompute_modules == ["transformer.h.{*}"]
    assert cfg.parallel.fsdp_modules == ["transformer.h.{*}", "transformer.wte", "lm_head"]
    assert cfg.training.per_device_train_batch_size == 2
    assert cfg.training.disable_shuffling is True
    assert cfg.training.lr_scheduler_type == "cosine"
    assert cfg.training.warmup_ratio == 0.1
    assert cfg.training.max_steps == 100
    assert cfg.training.save_steps == 50 and cfg.training.logging_steps == 5
    # cards × per_device_train_batch_size × gradient_accumulation_steps = --global-batch-size (dp = 8 / (2 × 2) = 2)
    assert 2 * cfg.training.per_device_train_batch_size * cfg.training.gradient_accumulation_steps == 16


def test_megatron_dialect_defaults_and_explicit_values_win():
    result, cfg = ok(BASE)
    assert result.dialect == "megatron" and "Megatron-LM's defaults" in result.report()
    t = cfg.training
    assert (t.seed, t.adam_beta2, t.lr_scheduler_type, t.min_lr, t.warmup_ratio) == (1234, 0.999, "linear", 0.0, 0.0)
    assert cfg.parallel.param_dtype == "fp32" and cfg.data.split == "969,30,1"
    _, cfg = ok(BASE + ["--seed", "7", "--adam-beta2", "0.95", "--lr-decay-style", "cosine", "--split", "99,1,0"])
    assert (cfg.training.seed, cfg.training.adam_beta2, cfg.training.lr_scheduler_type,
            cfg.data.split) == (7, 0.95, "cosine", "99,1,0")


def test_fsdp2_names_keep_reference_defaults_and_mix_with_flags():
    result, cfg = ok(["--model_name_or_path", "/m", "--output_dir", "/o",
                      "--tp_size", "2", "--max_steps", "3"], entry="pretrain_gpt.py")
    assert result.dialect == "fsdp2" and cfg.training.seed == 42 and cfg.training.adam_beta2 == 0.95
    _, mixed = ok(BASE + ["--per_device_train_batch_size", "1", "--training.lr", "5e-4"])
    assert mixed.training.lr == 5e-4 and mixed.training.per_device_train_batch_size == 1
    assert mixed.training.gradient_accumulation_steps == 4  # 16 / (1 × 4): derived after the names apply


def test_batch_not_divisible_names_every_number():
    text = refused(_replace(BASE, "--global-batch-size", "10"))
    assert "10" in text and "micro batch size 2" in text and "data-parallel size 4" in text


def test_world_not_divisible_by_tp_cp():
    text = refused(BASE + ["--tensor-model-parallel-size", "3"])
    assert "world size 4" in text and "tp_size 3" in text


def test_pipeline_parallel_folds_into_data_parallel():
    result, cfg = ok(BASE + ["--pipeline-model-parallel-size", "4",
                             "--num-layers-per-virtual-pipeline-stage", "1"], world_size=8)
    assert cfg.training.gradient_accumulation_steps == 1  # dp = 8, not 8 / 4
    assert "folded into FSDP sharding" in result.report()


def test_train_samples_and_sample_based_schedule():
    argv = _replace(BASE, "--train-iters", None) + ["--train-samples", "1600", "--lr-warmup-samples",
                                                    "24", "--lr-decay-samples", "1000"]
    _, cfg = ok(argv)
    assert cfg.training.max_steps == 100
    assert cfg.training.lr_warmup_steps == 1.5 and cfg.training.lr_decay_steps == 62.5


def test_warmup_and_decay_iters():
    _, cfg = ok(BASE + ["--lr-warmup-iters", "10", "--lr-decay-iters", "80", "--lr-decay-style", "WSD",
                        "--lr-wsd-decay-iters", "20", "--lr-wsd-decay-style", "cosine"])
    t = cfg.training
    assert (t.lr_warmup_steps, t.lr_decay_steps, t.lr_scheduler_type,
            t.lr_wsd_decay_steps, t.lr_wsd_decay_style) == (10, 80, "wsd", 20, "cosine")


@pytest.mark.parametrize("extra,both", [
    (["--bf16", "--fp16"], ("--bf16", "--fp16")),
    (["--train-samples", "100"], ("--train-iters", "--train-samples")),
    (["--lr-warmup-fraction", "0.1", "--lr-warmup-iters", "5"], ("--lr-warmup-fraction", "--lr-warmup-iters")),
])
def test_conflicts_name_both_sides(extra, both):
    text = refused(BASE + extra)
    assert all(side in text for side in both)


def test_a_zero_warmup_count_beside_the_fraction_is_megatrons_default():
    """Megatron asserts only that --lr-warmup-iters (or -samples) is 0 when --lr-warmup-fraction is given, and then
    warms up over the fraction of the decay: scripts write `--lr-warmup-iters 0 --lr-warmup-fraction .01`."""
    for zero in (["--lr-warmup-iters", "0"], ["--lr-warmup-samples", "0"]):
        _, cfg = ok(BASE + ["--lr-warmup-fraction", "0.1"] + zero)
        assert cfg.training.warmup_ratio == 0.1 and cfg.training.lr_warmup_steps is None


def test_wrong_type_names_flag_and_type():
    assert "--lr: expects a number, got 'abc'" in refused(_replace(BASE, "--lr", "abc"))
    assert "--num-layers: expects an integer" in refused(_replace(BASE, "--num-layers", "two"))
    assert "only when the job runs" not in refused(_replace(BASE, "--num-layers", "two"))
    text = refused(_replace(BASE, "--global-batch-size", "$((MBS * DP_SIZE))"))  # a script's run-time arithmetic
    assert ("--global-batch-size: expects an integer, got '$((MBS * DP_SIZE))': the script computes it only when the "
            "job runs") in text and "--set NAME=VALUE" in text


def test_unknown_flag_gets_did_you_mean():
    text = refused(BASE + ["--tensor-model-paralel-size", "2"])
    assert "unknown flag --tensor-model-paralel-size" in text and "did you mean --tensor-model-parallel-size" in text


def test_missing_essentials_say_what_to_add():
    assert "add --train-iters" in refused(_replace(BASE, "--train-iters", None))
    assert "add --lr" in refused(_replace(BASE, "--lr", None))
    result, cfg = ok(_replace(BASE, "--save", None))  # Megatron trains without --save: a default, named loudly
    assert cfg.training.output_dir == "./fsdp2_output"
    assert any(n.startswith("WARNING: no --save: training.output_dir = ./fsdp2_output") for n in result.notes)
    text = refused(["--micro-batch-size", "1", "--train-iters", "1", "--lr", "1", "--save", "/o", "--mock-data"])
    assert "architecture flags" in text


def test_launcher_quirks_local_rank_quotes_repeats():
    result, cfg = ok(["--local-rank=3"] + BASE + ["--split", "'99,1,0'", "--lr", "2e-3", "--local_rank", "1"])
    report = result.report()
    assert cfg.data.split == "99,1,0" and "literal quotes removed" in report
    assert cfg.training.lr == 2e-3 and "--lr given more than once: the last value (0.002) wins" in report
    thrice, _ = ok(BASE + ["--lr", "2e-3", "--lr", "4e-3"])  # said once, with the value that wins
    assert [n for n in thrice.notes if "--lr given more than once" in n] == [
        "--lr given more than once: the last value (0.004) wins, as in argparse"]
    assert "added by the launcher" in report


def test_absorbed_and_rejected_flags_are_reported():
    result, _ = ok(BASE + ["--use-distributed-optimizer", "--overlap-grad-reduce", "--sequence-parallel"])
    lines = {line.flag: line for line in result.lines}
    assert lines["--use-distributed-optimizer"].status == "absorbed" and lines["--use-distributed-optimizer"].text
    text = refused(BASE + ["--lora-load", "/ckpt/lora"])
    assert "--lora-load is not supported" in text


def test_sequence_parallel_is_mapped_and_on_by_default_with_tensor_parallelism():
    result, cfg = ok(BASE + ["--tensor-model-parallel-size", "2", "--sequence-parallel"])
    line = {line.flag: line for line in result.lines}["--sequence-parallel"]
    assert line.status == "mapped" and "parallel.sequence_parallel" in line.text and cfg.parallel.sequence_parallel
    assert not any("sequence parallelism" in note for note in result.notes)
    result, cfg = ok(BASE + ["--tensor-model-parallel-size", "2"])  # Megatron would run without; we run with, say so
    assert cfg.parallel.sequence_parallel
    assert any("runs with sequence parallelism" in note and "sequence_parallel false" in note for note in result.notes)


def test_context_parallel_ring_algorithms():
    argv = _replace(BASE, "--num-attention-heads", "4") + ["--context-parallel-size", "2"]
    result, cfg = ok(argv + ["--context-parallel-algo", "megatron_cp_algo"])
    assert cfg.parallel.cp_type == "ulysses" and "ring-style" in result.report()
    text = refused(_replace(argv, "--num-attention-heads", "3") + ["--context-parallel-algo", "megatron_cp_algo"])
    assert "--context-parallel-algo" in text and "divide by cp" in text


def test_recompute_variants():
    _, cfg = ok(_llama(BASE) + ["--recompute-activations"])
    assert cfg.parallel.recompute and cfg.parallel.recompute_modules == ["model.layers.{*}.self_attn"]
    _, cfg = ok(_llama(_replace(BASE, "--num-layers", "8")) + [
        "--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1",
        "--pipeline-model-parallel-size", "2"])
    assert cfg.parallel.recompute_modules == ["model.layers.0", "model.layers.4"]
    # the same in GPT-2's module names (BASE alone is a GPT-2 model)
    _, cfg = ok(BASE + ["--recompute-activations"])
    assert cfg.parallel.recompute_modules == ["transformer.h.{*}.attn"]
    _, cfg = ok(_replace(BASE, "--num-layers", "8") + [
        "--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1",
        "--pipeline-model-parallel-size", "2"])
    assert cfg.parallel.recompute_modules == ["transformer.h.0", "transformer.h.4"]


def test_load_equal_to_save_resumes_latest_and_checkpoint_flags():
    _, cfg = ok(BASE + ["--load", "/ckpt/run/", "--no-load-optim", "--no-load-rng", "--no-save-optim", "--no-save-rng"])
    t = cfg.training
    assert t.resume_from_checkpoint == "latest" and cfg.model.model_name_or_path is None
    assert (t.load_optim, t.load_rng, t.save_optim, t.save_rng, t.save_only_model) == (False, False, False, False, True)


def test_load_of_a_checkpoint_like_directory_fails_clearly_at_run_time(tmp_path):
    # a real Megatron checkpoint is continued (tests/megatron_ckpt); an empty iter_ directory is neither that nor HF
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("100")
    (tmp_path / "iter_0000100").mkdir()
    with pytest.raises(ConfigError, match="neither a Megatron-LM checkpoint"):
        check_model_path(str(tmp_path))
    with pytest.raises(ConfigError, match="no such directory"):
        check_model_path(str(tmp_path / "nope"))


def test_load_hf_config_disagreement_names_fields(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 64,
                                                      "rope_parameters": {"rope_theta": 500000.0}}))
    argv = _llama(BASE) + ["--load", str(tmp_path)]
    result, cfg = ok(argv)
    assert cfg.model.model_name_or_path == str(tmp_path) and cfg.model.train_from_scratch is False
    report = result.report()
    assert "num_hidden_layers: flags say 2, config.json says 4" in report and "rope_theta" in report


def _llama(argv):
    return argv + ["--position-embedding-type", "rope", "--normalization",
                   "RMSNorm", "--swiglu", "--disable-bias-linear",
                   "--hidden-dropout", "0.0", "--untie-embeddings-and-output-weights"]


FAMILIES = [
    ([], "gpt2"),
    (["--position-embedding-type", "rope", "--rotary-percent", "0.25"], "gpt_neox"),
    (["--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu", "--hidden-dropout", "0"], "llama"),
    (["--position-embedding-type", "rope", "--swiglu", "--disable-bias-linear", "--hidden-dropout", "0"], "stablelm"),
    (["--position-embedding-type", "rope", "--normalization",
      "RMSNorm", "--swiglu", "--disable-bias-linear", "--add-qkv-bias",
      "--hidden-dropout", "0"], "qwen2"),
    (["--position-embedding-type", "rope", "--normalization",
      "RMSNorm", "--swiglu", "--disable-bias-linear", "--qk-layernorm",
      "--group-query-attention", "--num-query-groups", "2", "--kv-channels", "32", "--hidden-dropout", "0"], "qwen3"),
    (["--position-embedding-type", "rope", "--normalization",
      "RMSNorm", "--swiglu", "--disable-bias-linear", "--qk-layernorm",
      "--num-experts", "4", "--moe-router-topk", "2", "--moe-ffn-hidden-size", "32", "--moe-aux-loss-coeff", "0.01",
      "--norm-topk-prob", "--hidden-dropout", "0"], "qwen3_moe"),
    (["--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu", "--disable-bias-linear",
      "--num-experts", "4", "--moe-router-topk", "2", "--hidden-dropout", "0"], "mixtral"),
]


@pytest.mark.parametrize("extra,family", FAMILIES)
def test_architecture_families_build_real_models(extra, family):
    _, cfg = ok(BASE + extra)
    arch = dict(cfg.model.architecture)
    assert arch["model_type"] == family and cfg.model.train_from_scratch
    assert arch["vocab_size"] == 128  # NullTokenizer: 100 + eod, padded to 128 as Megatron pads
    hf = AutoConfig.for_model(**arch)
    model = AutoModelForCausalLM.from_config(hf)
    assert model.get_input_embeddings().weight.shape == (128, 64)
    layers = getattr(hf, "num_hidden_layers", None) or hf.n_layer
    assert layers == 2


def test_architecture_details_follow_megatron_defaults():
    _, cfg = ok(BASE + ["--position-embedding-type", "rope", "--normalization",
                        "RMSNorm", "--swiglu", "--hidden-dropout", "0",
                        "--rotary-base", "500000", "--norm-epsilon", "1e-6", "--tensor-model-parallel-size", "2"])
    arch = cfg.model.architecture
    assert arch["intermediate_size"] == 128  # int(4 × 64 × 2/3 / 64) × 64, Megatron's SwiGLU default
    assert arch["tie_word_embeddings"] is True and arch["rope_parameters"]["rope_theta"] == 500000.0
    assert arch["rms_norm_eps"] == 1e-6 and arch["vocab_size"] == 256  # 101 padded to a multiple of 128 × tp 2


def test_unsupported_architecture_is_refused_with_reason():
    text = refused(BASE + ["--position-embedding-type", "rope", "--normalization", "RMSNorm"])
    assert "rope with RMSNorm and GeLU has no Hugging Face family here" in text
    text = refused(BASE + ["--position-embedding-type", "rope", "--swiglu"])  # Megatron's default biases
    assert "stablelm family, whose MLP and attention output have no biases" in text and "--disable-bias-linear" in text


def test_round_trip_flags_config_flags_config():
    for extra, _family in FAMILIES:
        argv = BASE + extra + ["--bf16", "--lr-decay-style", "cosine",
                               "--lr-warmup-iters", "5", "--recompute-activations",
                               "--tensor-model-parallel-size", "2", "--load", "/ckpt/run", "--eval-interval", "10"]
        _, first = ok(argv)
        flags, leftover = to_megatron(first)
        _, second = ok(flags)
        assert second == first, (flags, leftover)
        assert to_megatron(second)[0] == flags


def _replace(argv, flag, value):
    """Replace a flag's single value, or drop the flag when value is None."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == flag:
            if value is not None:
                out += [flag, value]
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def test_pipeline_folding_keeps_the_global_batch():
    # 8 ranks, pp 2: Megatron's dp is 4 (16 = 4 × 4); folded, dp is 8. The pipeline ranks share samples as context
    # parallel ranks (Megatron's dp, micro batch and accumulation); where the heads do not allow that, the micro
    # batch shrinks to keep 16
    argv = _replace(_replace(BASE, "--micro-batch-size", "4"), "--global-batch-size", "16")
    argv += ["--pipeline-model-parallel-size", "2"]
    result, cfg = ok(argv, world_size=8)
    assert cfg.parallel.cp_size == 2 and cfg.training.per_device_train_batch_size == 4
    assert cfg.training.gradient_accumulation_steps == 1
    result, cfg = ok(_replace(argv, "--num-attention-heads", "1"), world_size=8)
    assert cfg.training.global_batch_size == 16 and cfg.training.per_device_train_batch_size == 2
    assert cfg.parallel.cp_size == 1 and "micro batch 4 → 2" in result.report()
    # without --global-batch-size, Megatron's default counts dp without the pipeline ranks: 2 × (8 / 2)
    _, cfg = ok(_replace(BASE, "--global-batch-size", None) + ["--pipeline-model-parallel-size", "2"], world_size=8)
    assert cfg.training.global_batch_size == 8 and cfg.training.gradient_accumulation_steps == 1
    assert cfg.training.per_device_train_batch_size == 2 and cfg.parallel.cp_size == 2


def test_load_of_our_own_checkpoints_resumes_from_them(tmp_path):
    from megatron_compat.cli import load_from_our_checkpoint
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("2")
    (tmp_path / "iter_0000002").mkdir()
    (tmp_path / "iter_0000002" / "checkpoint_info.json").write_text("{}")
    _, cfg = ok(BASE + ["--load", str(tmp_path), "--finetune"])
    note = load_from_our_checkpoint(cfg)
    assert cfg.training.resume_from_checkpoint == str(tmp_path) and cfg.model.model_name_or_path is None
    assert cfg.training.finetune and "weights only" in note and cfg.training.output_dir == "/ckpt/run"
    # without checkpoint_info.json it is not ours; an empty iter_ directory is no Megatron checkpoint either
    (tmp_path / "iter_0000002" / "checkpoint_info.json").unlink()
    _, cfg = ok(BASE + ["--load", str(tmp_path)])
    assert load_from_our_checkpoint(cfg) is None
    with pytest.raises(ConfigError, match="neither a Megatron-LM checkpoint"):
        check_model_path(cfg.model.model_name_or_path)


def test_main_grads_dtype_bf16_reduces_in_bf16_only_with_the_precision_aware_optimizer():
    """Megatron's --main-grads-dtype bf16 (precision-aware optimizer) keeps and reduces gradients in bf16: FSDP2's
    reduce_dtype bf16. fp32 is the default; bf16 without that optimizer, or another dtype, is refused as Megatron
    does."""
    _, cfg = ok(BASE + ["--bf16", "--main-grads-dtype", "bf16", "--use-precision-aware-optimizer"])
    assert cfg.parallel.reduce_dtype == "bf16"
    assert ok(BASE + ["--bf16", "--main-grads-dtype", "fp32"])[1].parallel.reduce_dtype == "fp32"
    assert "needs --use-precision-aware-optimizer" in refused(BASE + ["--bf16", "--main-grads-dtype", "bf16"])
    assert "expects fp32 or bf16" in refused(BASE + ["--main-grads-dtype", "fp16", "--use-precision-aware-optimizer"])


def test_finetune_without_load_trains_from_scratch_as_megatron_does():
    """--finetune only changes what --load loads; without --load Megatron loads nothing (SenseCore's BLOOM jobs)."""
    result, cfg = ok(BASE + ["--finetune"])
    assert cfg.training.finetune is False and cfg.training.resume_from_checkpoint is None
    assert "WARNING: --finetune without --load" in result.report()
    assert any(line.flag == "--finetune" and "stays false" in line.text for line in result.lines)


def test_bert_dataset_settings_in_a_gpt_script_are_ignored_as_megatron_ignores_them():
    # MindSpeed's own GPT test scripts pass --short-seq-prob; only the BERT/T5 datasets read it (and --mask-prob)
    result, _ = ok(BASE + ["--short-seq-prob", "0.0", "--mask-prob", "0.15"])
    lines = {line.flag: line for line in result.lines}
    assert lines["--short-seq-prob"].status == lines["--mask-prob"].status == "absorbed"
    assert "BERT and T5 datasets" in lines["--short-seq-prob"].text


@pytest.mark.parametrize("extra", [[], ["--disable-bias-linear"], ["--position-embedding-type", "rope"],
                                   ["--position-embedding-type", "rope", "--swiglu", "--disable-bias-linear"]])
def test_megatrons_default_hidden_dropout_is_applied_and_said_in_every_layernorm_family(extra):
    """gpt2, opt, gpt_neox, stablelm: a script without --hidden-dropout trains with Megatron's 0.1, and the report
    says so (it may not be what the run meant)."""
    result, _ = ok(BASE + extra)
    assert any(n.startswith("hidden dropout 0.1: Megatron's default (no --hidden-dropout)") for n in result.notes)
    assert not any("no --hidden-dropout" in n for n in ok(BASE + extra + ["--hidden-dropout", "0.1"])[0].notes)
