"""Flags of real launch scripts: aliases and old spellings, fork flags, noop layers, missing data and save
directories, MoE scripts with expert parallelism, and the escape hatch for flags the user vouches for."""
import pytest
import torch

from fsdp2_core.models.build import build_model
from fsdp2_core.train.lr_schedule import build_schedule
from megatron_compat.translate import translate
from tests.translate_helpers import ok, refused

BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
        "--data-path /data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 100").split()
LLAMA = ["--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu", "--hidden-dropout", "0",
         "--disable-bias-linear"]


def with_flags(argv, **values):
    """BASE with some flags' values replaced (or added)."""
    out, i = [], 0
    while i < len(argv):
        name = argv[i][2:].replace("-", "_")
        if name in values:
            out += [argv[i], str(values.pop(name))]
            i += 2
        else:
            out.append(argv[i])
            i += 1
    for name, value in values.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out


def without(argv, *flags):
    """argv without these flags and their values."""
    out, skip = [], False
    for token in argv:
        if token.startswith("--"):
            skip = token in flags
        if not skip:
            out.append(token)
    return out


# --- noop layers ---
def test_noop_layers_leave_only_the_real_layers():
    # hidden 16 with SwiGLU gives Megatron's default FFN width int(4 * 16 * 2 / 3 / 64) * 64 = 0: give one
    _, cfg = ok(with_flags(BASE, num_layers=96, hidden_size=16, num_attention_heads=2) + LLAMA
                + ["--ffn-hidden-size", "32", "--noop-layers", "94,95"])
    assert cfg.model.architecture["num_hidden_layers"] == 94
    model = build_model(cfg, torch.device("cpu"), meta=True)
    assert len(model.model.layers) == 94


def test_noop_layers_renumber_the_dense_layers_and_refuse_bad_indices():
    moe = LLAMA + ["--qk-layernorm", "--num-experts", "4", "--moe-router-topk", "2", "--moe-layer-freq", "2"]
    _, cfg = ok(with_flags(BASE, num_layers=6) + moe + ["--noop-layers", "1"])
    # layers 1, 3, 5 are dense (freq 2); layer 1 is an identity: the real layers 0,2,3,4,5 have dense 3 and 5 at 2, 4
    assert cfg.model.architecture["num_hidden_layers"] == 5 and cfg.model.architecture["mlp_only_layers"] == [2, 4]
    assert "within 0..5" in refused(with_flags(BASE, num_layers=6) + LLAMA + ["--noop-layers", "6"])
    assert "comma-separated" in refused(with_flags(BASE, num_layers=6) + LLAMA + ["--noop-layers", "a,b"])


# --- missing data, no --save ---
def test_no_training_data_is_refused_naming_what_to_add():
    argv = without(BASE, "--data-path")
    text = refused(argv)
    assert "no training data" in text and "--data-path" in text and "--mock-data" in text
    assert "--data-path has no value" in refused(argv + ["--data-path"])
    ok(argv + ["--mock-data"])


# --- unknown flags the user vouches for ---
def test_unknown_flags_refused_unless_vouched_for_and_then_listed():
    from megatron_compat.unknown_flags import parse_vouch
    argv = BASE + ["--my-fork-switch", "--my-fork-level", "3"]
    text = refused(argv)
    assert "unknown flag --my-fork-switch" in text and "unknown flag --my-fork-level" in text
    result, _ = ok(argv, vouch=parse_vouch("all", "--allow-unknown-flags"))
    assert result.ignored == ["--my-fork-switch", "--my-fork-level"]
    report = result.report()
    assert "--my-fork-level 3" in report and "IGNORED" in report
    assert "WARNING: 2 unknown flag(s) ignored on the user's word (--allow-unknown-flags): --my-fork-switch, " \
           "--my-fork-level" in report
    partly = translate(argv, world_size=4, vouch=parse_vouch("--my-fork-level", "FSDP2_ALLOW_UNKNOWN_FLAGS"))
    assert [f for f, _ in partly.unknown] == ["--my-fork-switch"] and partly.ignored == ["--my-fork-level"]


def test_vouching_does_not_admit_rejected_flags():
    from megatron_compat.unknown_flags import parse_vouch
    result = translate(BASE + ["--use-cpu-initialization-unknown", "--use-kitchen-attention"], world_size=4,
                       vouch=parse_vouch("", "--allow-unknown-flags"))
    assert result.ignored == ["--use-cpu-initialization-unknown"] and not result.ok


def test_entry_point_and_convert_args_take_the_vouch(tmp_path, monkeypatch, capsys):
    from megatron_compat.cli import main
    argv = BASE + ["--mock-data", "--my-fork-switch", "--print-config"]
    assert main(list(argv)) == 2 and "unknown flag --my-fork-switch" in capsys.readouterr().err
    code = main(list(argv) + ["--allow-unknown-flags"])
    err = capsys.readouterr().err
    assert code == 0 and "WARNING: 1 unknown flag(s) ignored" in err, err
    monkeypatch.setenv("FSDP2_ALLOW_UNKNOWN_FLAGS", "--my-fork-switch")
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 0 and "(FSDP2_ALLOW_UNKNOWN_FLAGS): --my-fork-switch" in err, err
    monkeypatch.delenv("FSDP2_ALLOW_UNKNOWN_FLAGS")
    script = tmp_path / "run.sh"
    script.write_text("torchrun --nproc_per_node 4 pretrain_gpt.py " + " ".join(BASE) + " --my-fork-level 2\n")
    from tools.convert_args import main as convert
    out = tmp_path / "run.yaml"
    assert convert([str(script), "-o", str(out), "--script-out", str(tmp_path / "new.sh")]) == 1
    assert convert([str(script), "-o", str(out), "--script-out", str(tmp_path / "new.sh"),
                    "--allow-unknown-flags=--my-fork-level"]) == 0
    assert "# WARNING: --my-fork-level 2 was ignored (unknown here; --allow-unknown-flags)" in out.read_text()


# --- other spellings of mapped flags: the same config as the mapped spelling ---
SAME = [
    (["--checkpoint-activations"], ["--recompute-granularity", "full", "--recompute-method", "uniform"]),
    (["--checkpoint-activations", "--checkpoint-num-layers", "2"], ["--recompute-granularity", "full"]),
    (["--checkpoint-activations", "--activations-checkpoint-method", "block",
      "--activations-checkpoint-num-layers", "1"],
     ["--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1"]),
    (["--pad-vocab-size-to", "256"], ["--padded-vocab-size", "256"]),
    (LLAMA + ["--partial-rotary-factor", "0.5"], LLAMA + ["--rotary-percent", "0.5"]),
    (LLAMA + ["--rope-theta", "500000.0"], LLAMA + ["--rotary-base", "500000"]),
    (LLAMA + ["--rotary-base", "500000.0"], LLAMA + ["--rotary-base", "500000"]),
    (LLAMA + ["--rotary-position-embeddings-theta", "20000"], LLAMA + ["--rotary-base", "20000"]),
    (LLAMA + ["--num-key-value-heads", "2"], LLAMA + ["--group-query-attention", "--num-query-groups", "2"]),
    (LLAMA + ["--layernorm-epsilon", "1e-6"], LLAMA + ["--norm-epsilon", "1e-6"]),
    (LLAMA + ["--intermediate-size", "96"], LLAMA + ["--ffn-hidden-size", "96"]),
    (["--use-llama2-rotary-position-embeddings", "--RMSNorm", "--swiglu", "--hidden-dropout", "0"],
     ["--use-rotary-position-embeddings", "--normalization", "RMSNorm", "--swiglu", "--hidden-dropout", "0"]),
    (["--use-flash-attn-v2"], ["--use-flash-attn"]),
    (["--use-flash-attn-builder"], ["--use-flash-attn"]),  # Megatron-DeepSpeed's flash attention from DeepSpeed (XPU)
    (["--wandb-name", "r", "--wandb-project-name", "p", "--wandb-entity-name", "e", "--wandb_id", "i"],
     ["--wandb-exp-name", "r", "--wandb-project", "p", "--wandb-entity", "e", "--wandb-id", "i"]),
    (["--ds-sequence-parallel-size", "2"], ["--context-parallel-size", "2"]),
    (LLAMA + ["--attention-head-type", "multiquery"], LLAMA + ["--group-query-attention", "--num-query-groups", "1"]),
    (LLAMA + ["--causal-lm"], LLAMA + ["--untie-embeddings-and-output-weights"]),
    (LLAMA + ["--add-qkv-bias-linear"], LLAMA + ["--add-qkv-bias"]),
    (LLAMA + ["--rotary-scale-factor", "4"], LLAMA + ["--rotary-seq-len-interpolation-factor", "4"]),  # Pai's t / F
    (["--position-embedding-type", "rope", "--normalization", "rmsnorm", "--swiglu", "--hidden-dropout", "0"],
     ["--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu", "--hidden-dropout", "0"]),
    (["--use-fused-rmsnorm", "1"], ["--use-fused-rmsnorm"]),
    (["--use-packed-seq-params"], ["--reset-attention-mask"]),  # a swiss-ai fork's packing of pretraining documents
    (LLAMA + ["--rope-factor", "8.0", "--rope-low-freq-factor", "1.0", "--rope-high-freq-factor", "4.0",   # okoge-kaz
              "--rope-original-max-positional-embeddings", "8192"],
     LLAMA + ["--rope-scaling-type", "llama3", "--rope-scaling-factor", "8", "--low-freq-factor", "1",
              "--high-freq-factor", "4", "--original-max-position-embeddings", "8192"]),
]


@pytest.mark.parametrize("spelling, mapped", SAME, ids=lambda v: " ".join(v)[:60])
def test_other_spellings_give_the_mapped_flags_config(spelling, mapped):
    _, cfg = ok(BASE + spelling)
    _, expected = ok(BASE + mapped)
    assert cfg == expected and cfg != ok(BASE)[1]


def test_megatron_v1_spellings_read_as_today_s_flags():
    """Megatron-LM v1 scripts (before v2.0 renamed them): --model-parallel-size was the tensor-parallel size,
    --batch-size the micro batch per GPU (global = batch × data-parallel size) and --warmup a fraction of the
    training iterations."""
    batch = BASE.index("--micro-batch-size")
    assert BASE[batch + 2] == "--global-batch-size"
    v1 = BASE[:batch] + BASE[batch + 4:]  # v1 had neither flag
    result, cfg = ok(v1 + ["--model-parallel-size", "2", "--batch-size", "4", "--warmup", "0.01"], world_size=8)
    _, expected = ok(v1 + ["--tensor-model-parallel-size", "2", "--micro-batch-size", "4",
                           "--lr-warmup-fraction", "0.01"], world_size=8)
    assert cfg == expected
    assert (cfg.parallel.tp_size, cfg.training.per_device_train_batch_size, cfg.training.warmup_ratio) == (2, 4, 0.01)
    assert cfg.training.global_batch_size == 16  # 4 per rank × 4 data-parallel ranks, as v1 computed it
    assert any("--batch-size = --micro-batch-size" in note and "Megatron-LM v1" in note for note in result.notes)


def test_two_spellings_with_different_values_are_refused():
    text = refused(BASE + LLAMA + ["--rope-theta", "1e4", "--rotary-base", "20000"])
    assert "same setting with different values" in text


def test_deterministic_mode_in_each_spelling():
    for flag in ("--deterministic-mode", "--npu-deterministic", "--use-deter-comp"):
        result, cfg = ok(BASE + [flag])
        assert cfg.training.deterministic is True, flag
        assert any(line.flag == "--deterministic-mode" and line.status == "mapped" for line in result.lines), flag
    assert ok(BASE)[1].training.deterministic is False


# --- forks' own flags ---
def test_fork_flags_map_absorb_or_refuse_with_their_meaning():
    result, cfg = ok(BASE + ["--use-z-loss", "--use-mpi", "--no-torch-compile", "--enable_profiling", "all",
                             "--no-pipeline-parallel", "--cpu-optimizer", "--log-optimizer-states-to-tensorboard"])
    assert cfg.training.z_loss_coeff == 1e-4
    report = result.report()
    for flag in ("--use-mpi", "--no-torch-compile", "--enable_profiling", "--no-pipeline-parallel", "--cpu-optimizer"):
        assert any(line.flag == flag and line.status == "absorbed" for line in result.lines), flag
    assert "OpenMPI" in report
    assert "sqrt(hidden size)" in refused(BASE + ["--use-embedding-scaling"])
    assert "only BLOOM" in refused(BASE + ["--embed-layernorm"])
    assert "tasks" in refused(BASE + ["--train-data", "a.json"])
    assert "token" in refused(BASE + ["--moe-expert-parallel-size", "2"])


def test_fork_spellings_of_positions_and_what_has_no_family():
    """bigscience's and Pai's older Megatron spell rope `rotary` and learned positions `absolute`; ALiBi without
    BLOOM's embedding LayerNorm is named."""
    llama = ["--normalization", "RMSNorm", "--swiglu", "--hidden-dropout", "0", "--disable-bias-linear"]
    assert ok(BASE + ["--position-embedding-type", "rotary"] + llama)[1] == \
        ok(BASE + ["--position-embedding-type", "rope"] + llama)[1]
    assert ok(BASE + ["--position-embedding-type", "absolute"])[1] == ok(BASE)[1]
    assert "always normalises the embeddings" in refused(BASE + ["--position-embedding-type", "alibi"])


def test_a_global_batch_smaller_than_the_folded_data_parallel_size_names_pipeline_parallelism():
    text = refused(with_flags(BASE, global_batch_size=4, micro_batch_size=1, num_attention_heads=1) +
                   ["--pipeline-model-parallel-size", "4"], world_size=16)
    assert "global batch size 4 is smaller than the data-parallel size 16" in text
    assert "Nor can they share samples as context or tensor parallel ranks: cp × 4, tp × 1: its 1 heads" in text
    assert "Pipeline parallelism is not available" in text
    text = refused(with_flags(BASE, global_batch_size=36, micro_batch_size=1) +
                   ["--pipeline-model-parallel-size", "2"], world_size=16)
    assert "global batch size 36 is not a multiple of micro batch 1 × data-parallel size 16: with no pipeline" in text


def test_survey_fork_flags_absorbed_or_refused_by_what_they_do():
    """Flags of the surveyed forks (Megatron-LLaMA, bigscience, Habana, ROCm) that change nothing the engine does are
    absorbed; those that would change the model or data are refused naming what is missing."""
    harmless = ["--overlapped-distributed-optimizer", "--reduce-bucket-size=2e8", "--job-name", "j",
                "--codecarbon-dir", "/c", "--log-level", "info", "--log-level-replica", "error",
                "--use-torch-compile=0", "--use-torch-compiled-autograd=false", "--compiled-autograd-fallback-mode",
                "warn", "--use-fused-sdpa", "true", "--use-fused-sdpa-with-recompute", "false", "--verify-checkpoint",
                "--verify-checkpoint-model-type", "LLAMA", "--distribute-checkpointed-activations",
                "--fp8-margin=0", "--fp8-interval=1"]
    result, cfg = ok(BASE + harmless)
    absorbed = {line.flag for line in result.lines if line.status == "absorbed"}
    assert {f.partition("=")[0] for f in harmless if f.startswith("--")} <= absorbed
    assert cfg == ok(BASE)[1]
    for optimizer in ("adamw", "fusedadamw"):  # Habana's AdamW spellings
        assert ok(BASE + ["--optimizer", optimizer])[1].training.optimizer == "adamw"
    assert not ok(BASE + ["--use-fused-rmsnorm", "0"])[1].optimization.use_fused_rmsnorm
    assert "only the default (off)" in refused(BASE + ["--use-torch-compile", "true"])
    assert "only the default (0)" in refused(BASE + ["--fp8-margin", "1"])
    no_data = [w for w in BASE if w not in ("--data-path", "/data/corpus_text_document")]
    _, cfg = ok(no_data + ["--train-weighted-split-paths-path", "/jz/train.txt"])  # the cluster's: read at run time
    assert cfg.data.train_weighted_split_paths_path == "/jz/train.txt"
    assert "gated MLP with learned positions" in refused(BASE + ["--glu-activation", "swiglu"])
    assert "optimizer cpu-adam is not available" in refused(BASE + ["--optimizer", "cpu-adam"])
    result, _ = ok(BASE + ["--enable-zbh1-pipeline", "--enable-zbh1-exact-semantics"])  # no pipeline stages here
    assert {line.flag for line in result.lines if line.status == "absorbed"} >= {"--enable-zbh1-pipeline",
                                                                                 "--enable-zbh1-exact-semantics"}
    for flags, why in ((["--kd", "--load-teacher", "/t"], "knowledge distillation"), (["--mup"], "muP"),
                       (["--moe-num-capacity-bins", "10"], "capacity bins"), (["--qlora"], "4-bit (NF4)"),
                       (["--rotary-interleaved-patch"], "interleaved rotary"),
                       (["--loss-on-targets-only"], "target tokens only")):
        assert why in refused(BASE + flags), flags


def test_sgd_as_megatron_builds_it(tmp_path):
    """--optimizer sgd: torch SGD with --sgd-momentum and weight decay on Megatron's parameter groups (biases and
    norm scales not decayed, as for AdamW)."""
    import torch.nn as nn

    from fsdp2_core.testing.tiny import tiny_config
    from fsdp2_core.train.optimizer import build_optimizer
    _, cfg = ok(BASE + ["--optimizer", "sgd", "--sgd-momentum", "0.8", "--weight-decay", "0.1"])
    assert (cfg.training.optimizer, cfg.training.sgd_momentum) == ("sgd", 0.8)
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    t = tiny_config(str(tmp_path), optimizer="sgd", sgd_momentum=0.8, weight_decay=0.1).training
    optimizer = build_optimizer(model, t)
    assert type(optimizer) is torch.optim.SGD
    assert [(len(g["params"]), g["momentum"], g["wd_mult"]) for g in optimizer.param_groups] == [(1, 0.8, 1.0),
                                                                                                  (3, 0.8, 0.0)]


def test_cyclic_data_loader_and_data_sharding():
    _, cfg = ok(BASE + ["--dataloader-type", "cyclic"])
    assert (cfg.data.dataloader_type, cfg.data.data_sharding) == ("cyclic", True)
    _, cfg = ok(BASE + ["--dataloader-type", "cyclic", "--no-data-sharding"])
    assert (cfg.data.dataloader_type, cfg.data.data_sharding) == ("cyclic", False)
    assert "Megatron's single and cyclic samplers are" in refused(BASE + ["--dataloader-type", "external"])


def test_codegeex_entry_point_is_refused_by_name():
    from megatron_compat.entry_points import judge_entry
    judged = judge_entry("codegeex/megatron/tools/pretrain_codegeex.py", BASE)
    assert judged.translate_as is None and "CodeGeeX (a GPT with its own top query layer)" in judged.problem


def test_wandb_spellings_reach_wandb_init(tmp_path, monkeypatch):
    import sys
    import types

    from fsdp2_core.train.metrics import MetricsSink
    calls = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(kw) or types.SimpleNamespace(log=lambda *a, **k: None, finish=lambda: None)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    argv = with_flags(BASE, save=tmp_path) + ["--wandb-project", "TSUBAME-FLOPS", "--wandb-name", "job-1",
                                              "--wandb-entity", "okoge", "--wandb-id", "abc"]
    MetricsSink(ok(argv)[1].training, 0).close()
    assert {k: calls[0][k] for k in ("project", "name", "entity", "id")} == {
        "project": "TSUBAME-FLOPS", "name": "job-1", "entity": "okoge", "id": "abc"}


# --- Megatron-DeepSpeed: token counts, the DeepSpeed config ---
def test_token_counts_become_steps():
    # global batch 16 × seq 32 = 512 tokens per step
    _, cfg = ok(BASE + ["--train-tokens", "5000", "--lr-decay-tokens", "4096", "--lr-warmup-tokens", "256"])
    assert cfg.training.max_steps == 10  # ⌈5000 / 512⌉, sooner than --train-iters 100
    assert cfg.training.lr_decay_steps == 8.0 and cfg.training.lr_warmup_steps == 0.5
    _, cfg = ok(BASE + ["--train-tokens", "10000000"])
    assert cfg.training.max_steps == 100  # --train-iters comes first


def test_train_tokens_beside_train_samples_stop_the_run_by_tokens():
    """Megatron-DeepSpeed's examples give --train-samples (twice what they need) and --train-tokens: the run lasts
    --train-samples (schedules, data), and its loop stops at --train-tokens."""
    at = BASE.index("--train-iters")
    argv = BASE[:at] + BASE[at + 2:] + ["--train-samples", "3200", "--train-tokens", "5000",
                                        "--lr-decay-tokens", "4096"]
    result, cfg = ok(argv)
    t = cfg.training
    assert (t.train_samples, t.max_steps, t.train_tokens, t.lr_decay_steps) == (3200, 200, 5000, 8.0)
    assert "training.train_tokens = 5000: the run ends before the first iteration" in result.report()


def test_token_counts_beside_a_batch_ramp_are_sample_counts():
    """Megatron-DeepSpeed's MoE examples give --rampup-batch-size with --train-samples, --train-tokens and the LR
    schedule in tokens: every sample holds --seq-length tokens, so the schedule (which advances by consumed samples)
    decays over tokens ÷ --seq-length samples whatever the batch, and the run stops by tokens."""
    at = BASE.index("--train-iters")
    argv = BASE[:at] + BASE[at + 2:] + ["--train-samples", "3200", "--rampup-batch-size", "4", "4", "800",
                                        "--train-tokens", "51200", "--lr-decay-tokens", "40960",
                                        "--lr-warmup-tokens", "4096"]
    _, cfg = ok(argv)
    t = cfg.training
    assert (t.train_tokens, t.rampup_batch_size, t.train_samples) == (51200, [4, 4, 800], 3200)
    schedule = build_schedule(t, 0, t.global_batch_size)
    assert (schedule.decay_steps, schedule.warmup_steps) == (40960 / 32, 4096 / 32)  # --seq-length 32
    without_samples = BASE + ["--rampup-batch-size", "4", "4", "800", "--train-tokens", "51200"]
    assert "--train-tokens as the run's length counts steps of a constant global batch" in refused(without_samples)


DS_JSON = '{"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2, "bf16": {"enabled": true}, ' \
          '"zero_optimization": {"stage": 2}}'


def test_deepspeed_config_decides_precision_and_clipping(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(DS_JSON)
    result, cfg = ok(BASE + ["--deepspeed", "--deepspeed_config", str(path), "--zero-stage", "2", "--clip-grad", "1.0"])
    assert cfg.parallel.param_dtype == "bf16" and cfg.training.max_grad_norm == 0.0  # DeepSpeed clips only by its own
    assert any("ZeRO stage" in line.text for line in result.lines if line.flag == "--zero-stage")
    assert "not by --clip-grad 1.0" in result.report()
    result, _ = ok(BASE + ["--deepspeed", "--deepspeed_config", str(path), "--zero-stage", "3"])
    assert "--zero-stage 3 and" in result.report() and "trains with the config file's (2)" in result.report()
    result, cfg = ok(with_flags(BASE, global_batch_size=32) + ["--deepspeed", "--deepspeed_config", str(path)])
    assert cfg.training.global_batch_size == 32  # Megatron-DeepSpeed hands DeepSpeed its own batch every iteration
    assert "train_batch_size 16 is replaced by --global-batch-size 32" in result.report()
    text = refused(with_flags(BASE, micro_batch_size=4) + ["--deepspeed", "--deepspeed_config", str(path)])
    assert "train_micro_batch_size_per_gpu is 2 but --micro-batch-size says 4" in text


def test_a_deepspeed_config_that_is_not_here_leaves_the_flags_to_decide(tmp_path):
    """A Megatron-DeepSpeed script copied without its repository's JSON (or whose JSON another step writes): the
    flags decide batch, precision and clipping, and the report says so loudly, naming the file."""
    missing = str(tmp_path / "ds_config_gbs512_mbs2.json")
    result, cfg = ok(BASE + ["--bf16", "--clip-grad", "0.5", "--deepspeed", "--deepspeed_config", missing])
    assert (cfg.parallel.param_dtype, cfg.training.max_grad_norm) == ("bf16", 0.5)
    report = result.report()
    assert f"WARNING: --deepspeed_config {missing} is not here, and the script does not write it" in report
    assert "precision (bf16) and gradient clipping (--clip-grad 0.5) come from the Megatron flags" in report
    _, cfg = ok(BASE + ["--deepspeed", "--deepspeed_config", missing])
    assert cfg.training.max_grad_norm == 1.0  # Megatron's default, which the config templates also hold


def test_deepspeed_config_from_a_here_document_converts(tmp_path):
    from tools.convert_args import main as convert
    script = tmp_path / "ds_pretrain.sh"
    flags = " ".join(without(BASE, "--global-batch-size"))
    script.write_text(f"""GBS=64
MBS=2
ZERO_STAGE=1
config_json="./ds_config_$GBS.json"
cat <<EOT > $config_json
{{
  "train_batch_size" : $GBS,
  "train_micro_batch_size_per_gpu": $MBS,
  "gradient_clipping": 0.7,
  "zero_optimization": {{ "stage": $ZERO_STAGE }},
  "fp16": {{ "enabled": true, "loss_scale": 0 }}
}}
EOT
torchrun --nproc_per_node 4 pretrain_gpt.py {flags} --deepspeed --deepspeed_config $config_json \\
    --zero-stage $ZERO_STAGE --deepspeed-activation-checkpointing --checkpoint-activations
""")
    out = tmp_path / "ds.yaml"
    assert convert([str(script), "-o", str(out), "--script-out", str(tmp_path / "new.sh")]) == 0
    from fsdp2_core.config import load_config
    cfg = load_config(str(out))
    assert (cfg.training.global_batch_size, cfg.training.per_device_train_batch_size) == (64, 2)
    assert cfg.parallel.param_dtype == "fp16" and cfg.training.max_grad_norm == 0.7 and cfg.parallel.recompute


def test_loss_scaling_flags_and_the_deepspeed_fp16_section(tmp_path):
    """Megatron's flags set the loss scaler; under --deepspeed Megatron-DeepSpeed ignores them (it hands DeepSpeed the
    bare optimizer) and the config's fp16 section decides: loss_scale 0 is dynamic from 2**initial_scale_power."""
    result, cfg = ok(BASE + ["--fp16", "--initial-loss-scale", "65536", "--min-loss-scale", "4", "--loss-scale-window",
                             "500", "--hysteresis", "3"])
    t = cfg.training
    assert (t.loss_scale, t.initial_loss_scale, t.min_loss_scale, t.loss_scale_window, t.hysteresis) == \
        (None, 65536.0, 4.0, 500, 3)
    _, cfg = ok(BASE + ["--fp16", "--loss-scale", "12"])
    assert cfg.training.loss_scale == 12.0 and cfg.parallel.param_dtype == "fp16"
    path = tmp_path / "ds.json"
    path.write_text('{"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2, "fp16": {"enabled": true, '
                    '"loss_scale": 0, "loss_scale_window": 500, "hysteresis": 2, "min_loss_scale": 1, '
                    '"initial_scale_power": 12}}')
    result, cfg = ok(BASE + ["--fp16", "--loss-scale", "12", "--deepspeed", "--deepspeed_config", str(path)])
    t = cfg.training
    assert (t.loss_scale, t.initial_loss_scale, t.loss_scale_window, t.hysteresis, t.min_loss_scale) == \
        (None, 4096.0, 500, 2, 1)
    line = next(line for line in result.lines if line.flag == "--loss-scale")
    assert line.status == "absorbed" and "ignored under --deepspeed" in line.text
    path.write_text('{"train_batch_size": 16, "fp16": {"enabled": true, "loss_scale": 128}}')
    _, cfg = ok(BASE + ["--deepspeed", "--deepspeed_config", str(path)])
    assert cfg.training.loss_scale == 128.0 and cfg.parallel.param_dtype == "fp16"


# --- Pai-Megatron-Patch ---
def test_pai_tokenizer_and_dataset_kinds(tmp_path):
    argv = without(BASE, "--tokenizer-type", "--vocab-size")
    _, cfg = ok(argv + ["--patch-tokenizer-type", "Qwen2Tokenizer", "--load", "/hf/qwen2", "--dataset", "MMAP",
                        "--extra-vocab-size", "421", "--max-padding-length", "2048", "--train-mode", "pretrain"])
    assert cfg.model.tokenizer_type == "HuggingFaceTokenizer" and cfg.model.tokenizer_name_or_path == "/hf/qwen2"
    assert cfg.data.data_manager_type == "mg" and cfg.data.dataset == "/data/corpus_text_document"
    assert "reads raw JSON samples" in refused(argv + ["--patch-tokenizer-type", "LLamaTokenizer", "--load", "/x",
                                                       "--dataset", "JSON-SFT"])
    assert "Pai's own tokenizer" in refused(argv + ["--patch-tokenizer-type", "JiebaBPETokenizer", "--load", "/x"])
    assert "--train-mode" in refused(argv + ["--patch-tokenizer-type", "LLamaTokenizer", "--load", "/x",
                                            "--train-mode", "finetune"])


def test_dataset_name_keeps_its_config_meaning_for_other_values():
    result = translate(["--dataset", "alpaca", "--stage", "sft", "--output_dir", "/o"], world_size=1)
    assert result.values["dataset"] == "alpaca" and not result.unknown


# --- what the script's variables did to the flags (tools/convert_args.py) ---
SCRIPT_FLAGS = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
                "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --tokenizer-type "
                "PretrainedFromHF")


def _convert(tmp_path, text, *extra):
    from tools.convert_args import main as convert
    script = tmp_path / "run.sh"
    script.write_text(text)
    out = tmp_path / "run.yaml"
    code = convert([str(script), "-o", str(out), "--script-out", str(tmp_path / "new.sh"), *extra])
    return code, out


def test_placeholder_split_by_bash_is_kept_as_one_value_and_named(tmp_path, capsys):
    code, out = _convert(tmp_path, f"""TOKENIZER_PATH="your tokenizer path"
DATA_PATH="your data path"
GPT_ARGS="{SCRIPT_FLAGS} --tokenizer-name-or-path ${{TOKENIZER_PATH}}"
torchrun --nproc_per_node 2 pretrain_gpt.py $GPT_ARGS --data-path $DATA_PATH --save /ckpt
""")
    err = capsys.readouterr().err
    assert code == 0
    assert ("--tokenizer-name-or-path is given $TOKENIZER_PATH = 'your tokenizer path', which bash splits into 3 "
            "words; kept as one value — it is still the example's placeholder") in err
    # a list flag too: the placeholder is one value (3 dataset prefixes would be a wrong reading of it)
    assert ("--data-path is given $DATA_PATH = 'your data path', which bash splits into 3 words; kept as one value "
            "— it is still the example's placeholder") in err
    text = out.read_text()
    assert "dataset: your data path" in text
    assert "# WARNING: line 4: --tokenizer-name-or-path is given $TOKENIZER_PATH" in text
    assert "tokenizer_name_or_path: your tokenizer path" in text


def test_data_path_from_a_sourced_file_fails_naming_the_variable(tmp_path, capsys):
    code, out = _convert(tmp_path, f"""source ./data_blend.sh
torchrun --nproc_per_node 2 pretrain_gpt.py {SCRIPT_FLAGS} --tokenizer-name-or-path /tok --data-path ${{DATA_BLEND}} \\
    --split 99,1,0 --save /ckpt
""")
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "--data-path has no value (line 2): it is written --data-path $DATA_BLEND, and $DATA_BLEND is not set by " \
           "the script; give it a value: tools/convert_args.py --set DATA_BLEND=VALUE SCRIPT" in err
    code, out = _convert(tmp_path, open(tmp_path / "run.sh").read(), "--set", "DATA_BLEND=0.5 a 0.5 b")
    assert code == 0 and "dataset: 0.5 a 0.5 b" in out.read_text()


def test_no_data_and_an_unset_argument_fail_clearly(tmp_path, capsys):
    code, _ = _convert(tmp_path, f"torchrun --nproc_per_node 2 pretrain_gpt.py {SCRIPT_FLAGS} --tokenizer-name-or-path "
                                 "/tok --save /ckpt\n")
    assert code == 1 and "no training data" in capsys.readouterr().err
    code, _ = _convert(tmp_path, f"""CKPT=$1
torchrun --nproc_per_node 2 pretrain_gpt.py {SCRIPT_FLAGS} --tokenizer-name-or-path /tok --mock-data --load $CKPT \\
    --save /ckpt
""")
    err = capsys.readouterr().err  # a path from the script's argument: the new script takes the same argument
    assert code == 0 and "--load is ${1}, from the script's argument ($CKPT: $CKPT is set from the script's " \
                         "argument 1 ($1), which was not given); the new launch script passes it" in err
    assert "expects one value" not in err
    code, _ = _convert(tmp_path, f"""MBS=$1
torchrun --nproc_per_node 2 pretrain_gpt.py {SCRIPT_FLAGS.replace("--micro-batch-size 2 ", "")} --mock-data \
    --tokenizer-name-or-path /tok --micro-batch-size $MBS --save /ckpt
""")
    assert code == 1 and "--micro-batch-size has no value" in capsys.readouterr().err  # a number cannot wait


def test_megatron_off_values_of_exit_interval_and_eval_iters():
    """Habana's run_llama.sh passes --exit-interval 0 and ROCm's train_llama.sh --eval-iters -1: Megatron reads the
    first as no exit interval (`if args.exit_interval and ...`) and validates only when --eval-iters > 0."""
    _, cfg = ok(BASE + ["--exit-interval", "0", "--eval-iters", "-1"])
    assert (cfg.training.exit_interval, cfg.training.eval_iters) == (None, 0)
    _, cfg = ok(BASE + ["--exit-interval", "50", "--eval-iters", "3"])
    assert (cfg.training.exit_interval, cfg.training.eval_iters) == (50, 3)


def test_megatron_fsdp_precision_flags_of_its_deepseek_v3_example_are_absorbed():
    """Megatron-LM's Megatron-FSDP DeepSeek-V3 example asks for bf16 gradient communication and main gradients:
    FSDP2 keeps fp32 sharded gradients and reduces in fp32 unless --grad-reduce-in-bf16 is given, and says so."""
    result, cfg = ok(BASE + ["--megatron-fsdp-grad-comm-dtype", "bf16", "--megatron-fsdp-main-grads-dtype", "bf16"])
    assert cfg.parallel.reduce_dtype == "fp32"
    report = result.report()
    assert "--megatron-fsdp-main-grads-dtype bf16" in report and "accumulates sharded gradients in fp32" in report
    assert "add it for bf16 reductions" in report
    _, cfg = ok(BASE + ["--megatron-fsdp-grad-comm-dtype", "bf16", "--grad-reduce-in-bf16"])
    assert cfg.parallel.reduce_dtype == "bf16"


def test_tokenizer_padding_side_is_a_no_op_for_pretraining_and_refused_left_for_instruction_data():
    """MindSpeed's Gemma 2 27B pretraining script gives --tokenizer-padding-side left: pretraining samples are never
    padded, so it changes nothing there; instruction batches are padded on the right here, which a rotary model
    computes as MindSpeed's left padding (test_left_padding_gives_a_rotary_model_the_loss_of_right_padding), so left
    is refused only with learned positions."""
    result, _ = ok(BASE + ["--tokenizer-padding-side", "left"])
    line = next(ln for ln in result.lines if ln.flag == "--tokenizer-padding-side")
    assert line.status == "absorbed" and "never padded" in line.text, line
    assert "changes a learned-position model" in refused(BASE + ["--tokenizer-padding-side", "left",
                                                                 "--is-instruction-dataset"])
    ok(BASE + LLAMA + ["--tokenizer-padding-side", "left", "--is-instruction-dataset"])
    assert "expects left or right" in refused(BASE + ["--tokenizer-padding-side", "up"])
    ok(BASE + ["--tokenizer-padding-side", "right", "--is-instruction-dataset"])


def test_left_padding_gives_a_rotary_model_the_loss_of_right_padding():
    """MindSpeed's instruction batches with left padding: positions numbered over the padded row (no position ids),
    padding masked; the summed loss of a rotary model equals the engine's right padding."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    samples = [torch.randint(1, 50, (n,)) for n in (9, 5)]
    width = 12

    def batch_loss(left):
        ids, mask, labels = [], [], []
        for s in samples:
            pad = width - len(s)
            place = (lambda x, fill: torch.cat([torch.full((pad,), fill), x])) if left else \
                (lambda x, fill: torch.cat([x, torch.full((pad,), fill)]))
            ids.append(place(s, 0))
            mask.append(place(torch.ones(len(s), dtype=torch.long), 0))
            labels.append(place(torch.cat([torch.tensor([-100]), s[1:]]), -100))  # the prompt's first token
        ids, mask, labels = torch.stack(ids), torch.stack(mask), torch.stack(labels)
        positions = torch.arange(width).expand_as(ids)  # MindSpeed: the row's index, padding included
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100, reduction="sum")

    torch.testing.assert_close(batch_loss(left=True), batch_loss(left=False), rtol=1e-5, atol=1e-5)


def test_a_flag_given_a_slurm_variable_takes_the_value_the_sbatch_lines_fix(tmp_path):
    """--tensor-model-parallel-size $SLURM_GPUS_PER_NODE: Slurm sets it from #SBATCH --gpus-per-node, so the job's
    value is known here; a Slurm variable no #SBATCH line fixes still leaves the flag without a value."""
    from fsdp2_core.config import load_config
    from tools.convert_args import main as convert
    head = "#!/bin/bash\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n#SBATCH --gpus-per-node=4\n"
    launch = ("srun torchrun --nproc_per_node 4 --nnodes 2 pretrain_gpt.py " + " ".join(BASE)
              + " --tensor-model-parallel-size $TP\n")
    script, out = tmp_path / "run.sh", tmp_path / "run.yaml"
    script.write_text(head + "TP=$SLURM_GPUS_PER_NODE\n" + launch)
    assert convert([str(script), "-o", str(out), "--script-out", str(tmp_path / "new.sh")]) == 0
    assert load_config(str(out)).parallel.tp_size == 4
    assert "is given $SLURM_GPUS_PER_NODE, which Slurm sets from #SBATCH --gpus-per-node 4: 4 taken" in \
        out.read_text()
    script.write_text(head + "TP=$SLURM_CPUS_PER_TASK\n" + launch)
    assert convert([str(script), "-o", str(tmp_path / "other.yaml"), "--script-out", str(tmp_path / "other.sh")]) == 1
    assert not (tmp_path / "other.yaml").exists()


def test_save_retain_interval_is_translated_and_checked_against_the_save_interval():
    _, cfg = ok(BASE + ["--save-interval", "500", "--save-retain-interval", "2000"])
    assert (cfg.training.save_steps, cfg.training.save_retain_interval) == (500, 2000)
    assert "save_retain_interval (1200) must be a multiple of save_steps (500)" in refused(
        BASE + ["--save-interval", "500", "--save-retain-interval", "1200"])


def test_rope_factor_alone_is_mindspeeds_deepseek_v4_setting():
    text = refused(BASE + LLAMA + ["--rope-factor", "4"])
    assert "--rope-factor without --rope-low-freq-factor: MindSpeed's DeepSeek-V4" in text


def test_max_checkpoints_keeps_the_newest_n():
    """A MindSpeed-LLM fork's --max-checkpoints N removes all but the newest N iter_ folders: save_total_limit."""
    assert ok(BASE + ["--max-checkpoints", "2"])[1].training.save_total_limit == 2
    assert ok(BASE + ["--max-checkpoints", "0"])[1].training.save_total_limit is None


def test_encoder_seq_length_is_a_gpt_models_sequence_length():
    """Megatron sets seq_length from --encoder-seq-length when only that is given (LUMI's GPT scripts)."""
    k = BASE.index("--seq-length")
    _, cfg = ok(BASE[:k] + ["--encoder-seq-length", "32"] + BASE[k + 2:])
    assert cfg == ok(BASE)[1]
    assert "same setting with different values" in refused(BASE + ["--encoder-seq-length", "64"])
