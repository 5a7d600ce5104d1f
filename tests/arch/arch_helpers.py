"""CPU-sized Megatron flag sets of the families this package covers, and ways to run them."""
import os
import warnings

import torch

from fsdp2_core.testing.spawn import spawn_runs
from fsdp2_core.testing.tiny import VOCAB, SyntheticDataset

# A tiny rope model (3 layers, hidden 32) trained on the synthetic data: vocabulary 127 + eod = 128, which is a
# multiple of 64 × tp for tp 1 and 2, so tensor parallelism pads no extra rows (Megatron's padding).
BASE = ("--num-layers 3 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 64 "
        "--micro-batch-size 1 --global-batch-size 4 --train-iters 8 --lr 3e-3 --min-lr 3e-4 --lr-warmup-iters 1 "
        "--save /ckpt/run --data-path /data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 127 "
        "--make-vocab-size-divisible-by 64 --position-embedding-type rope --normalization RMSNorm --swiglu "
        "--disable-bias-linear --hidden-dropout 0 --attention-dropout 0 --untie-embeddings-and-output-weights "
        "--seed 11 --log-interval 1 --num-workers 0").split()
# --num-workers 0: these runs compare architectures, and each spawned rank trains several runs one after another, so
# Megatron's 2 loader workers would be forked again for every run by a rank holding the earlier runs' state (in one CI
# run the workers of both ranks died of a segmentation fault at the start of a run; not reproduced here). The loader
# workers are tested on the user's path (one run per process, Megatron's default of 2) in
# tests/checkpoint/test_loader_workers.py and the torchrun tests of tests/checkpoint.

# DeepSeek-V3-style: MLA with a q LoRA, a sigmoid router with expert bias, 4 groups of 2 experts (top 2 groups),
# scaling 2.5, one shared expert, the first layer dense, the sequence aux loss, z-loss and one MTP layer.
DSV3 = ("--multi-latent-attention --qk-layernorm --q-lora-rank 16 --kv-lora-rank 16 --qk-head-dim 8 "
        "--qk-pos-emb-head-dim 8 --v-head-dim 8 --num-experts 8 --moe-router-topk 4 --moe-ffn-hidden-size 16 "
        "--moe-shared-expert-intermediate-size 16 --moe-router-score-function sigmoid --moe-router-enable-expert-bias "
        "--moe-router-bias-update-rate 1e-2 --moe-router-num-groups 4 --moe-router-group-topk 2 "
        "--moe-router-topk-scaling-factor 2.5 --moe-router-load-balancing-type seq_aux_loss --moe-aux-loss-coeff 1e-3 "
        "--moe-layer-freq [0]*1+[1]*2 --mtp-num-layers 1 --mtp-loss-scaling-factor 0.3 --moe-z-loss-coeff 1e-3")
# DeepSeek-V2-style (megatron-core spelling): MLA without a q LoRA (V2-Lite), a softmax over all experts, 4 groups
# of 2 experts (top 2 groups, top 2 experts: megatron-core's group rule is DeepSeek-V2's there), scaling 2.5, two
# shared experts, the first layer dense, the aux loss and z-loss.
DSV2 = ("--multi-latent-attention --qk-layernorm --kv-lora-rank 16 --qk-head-dim 8 --qk-pos-emb-head-dim 8 "
        "--v-head-dim 8 --num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 16 --moe-router-pre-softmax "
        "--moe-shared-expert-intermediate-size 32 --moe-router-num-groups 4 --moe-router-group-topk 2 "
        "--moe-router-topk-scaling-factor 2.5 --moe-aux-loss-coeff 1e-2 --moe-z-loss-coeff 1e-3 "
        "--first-k-dense-replace 1 --norm-epsilon 1e-6")
# MindSpeed's DeepSeek-V2 spelling: group_limited_greedy (groups ranked by their best score whatever k is), a q LoRA.
DSV2_MINDSPEED = ("--multi-head-latent-attention --qk-layernorm --q-lora-rank 16 --kv-lora-rank 16 "
                  "--qk-nope-head-dim 8 --qk-rope-head-dim 8 --v-head-dim 8 --num-experts 8 --moe-router-topk 4 "
                  "--moe-intermediate-size 16 --n-shared-experts 1 --moe-router-load-balancing-type "
                  "group_limited_greedy --n-group 4 --topk-group 2 --routed-scaling-factor 2.0 --moe-aux-loss-coeff 0 "
                  "--first-k-dense-replace 1 --moe-layer-freq 1")
# gpt-oss (Megatron-LM's flags): quick-GeGLU experts with offset 1 and clamp 7, learnable softmax sinks, a window of
# 8 + 1 positions on layers 1 and 3 (1-based; every 2nd layer full attention), biases (flag_config drops BASE's
# --disable-bias-linear and --swiglu for it), softmax over the top-k logits, the aux loss and z-loss.
GPT_OSS = ("--quick-geglu --glu-linear-offset 1.0 --activation-func-clamp-value 7.0 --softmax-type learnable "
           "--window-size 8,0 --window-attn-skip-freq 2 --num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 16 "
           "--moe-aux-loss-coeff 1e-2 --moe-z-loss-coeff 1e-3 --group-query-attention --num-query-groups 2 "
           "--kv-channels 8")
# MiniMax-M2 (the public Megatron recipe's flags): sigmoid router with expert bias, experts in every layer, q/k norms
# over all heads (its --spec), half-rotary, the sequence aux loss and z-loss.
MINIMAX_M2 = ("--spec miles_plugins.models.minimax_m2 get_minimax_m2_spec --qk-layernorm --rotary-percent 0.5 "
              "--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 16 --moe-router-score-function sigmoid "
              "--moe-router-enable-expert-bias --moe-router-bias-update-rate 1e-2 --moe-router-load-balancing-type "
              "seq_aux_loss --moe-aux-loss-coeff 1e-3 --moe-z-loss-coeff 1e-3 --group-query-attention "
              "--num-query-groups 2 --kv-channels 8")
# DeepSeek-V3.2 / GLM-5-style (MindSpeed): the DeepSeek-V3 set with the sparse-attention indexer, top 8 of 32 keys.
DSA = DSV3 + " --enable-dsa-indexer --index-n-heads 2 --index-head-dim 16 --index-topk 8 --indexer-loss-coeff 1.0"
# GLM-4.5-style (MindSpeed spelling): q/k/v biases, half-rotary, GQA, sigmoid router with expert bias, no aux loss.
GLM45 = ("--num-experts 8 --moe-router-topk 4 --moe-ffn-hidden-size 16 --n-shared-experts 1 "
         "--moe-router-score-function sigmoid --moe-router-enable-expert-bias --moe-router-load-balancing-type none "
         "--norm-topk-prob --add-qkv-bias --rotary-percent 0.5 --first-k-dense-replace 1 --group-query-attention "
         "--num-query-groups 2 --kv-channels 8")
# Qwen2-MoE-style (MindSpeed spelling): 2 shared experts' width behind a gate, softmax over all experts, aux loss.
QWEN2_MOE = ("--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 16 --n-shared-experts 2 --shared-expert-gate "
             "--moe-router-pre-softmax --add-qkv-bias --moe-aux-loss-coeff 1e-2 --group-query-attention "
             "--num-query-groups 2")
QWEN3_MOE = ("--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 16 --qk-layernorm --moe-aux-loss-coeff 1e-2 "
             "--group-query-attention --num-query-groups 2 --kv-channels 8")
LLAMA31 = "--use-rope-scaling --rope-scaling-factor 8 --rotary-base 500000 --group-query-attention --num-query-groups 2"
MISTRAL = "--sliding-window 8 --group-query-attention --num-query-groups 2"
# MiniCPM-style (MindSpeed's examples/mcore/minicpm): embeddings × 12, residual branches × 1.4 / sqrt(layers), final
# hidden states ÷ (hidden / 8), tied embeddings (BASE unties them; flag_config keeps that for the other families).
MINICPM = "--scale-emb 12 --scale-depth 1.4 --dim-model-base 8 --group-query-attention --num-query-groups 2"

class PatternDataset(SyntheticDataset):
    """Samples a model can learn in a few steps: each token follows from the one before (t' = 5t + 3 mod V)."""

    def __init__(self, n: int, seed: int = 0):
        super().__init__(n, seed=seed)
        for i in range(1, self.text.shape[1]):
            self.text[:, i] = (5 * self.text[:, i - 1] + 3) % VOCAB


FAMILIES = {"deepseek_v3": DSV3, "deepseek_v2": DSV2, "gpt_oss": GPT_OSS, "minimax_m2": MINIMAX_M2, "glm4_moe": GLM45,
            "qwen2_moe": QWEN2_MOE, "qwen3_moe": QWEN3_MOE, "llama": LLAMA31, "mistral": MISTRAL, "granite": MINICPM}


def megatron_utils():
    """megatron-core's MoE utilities (it warns about Transformer Engine and Apex, which CPU runs do without)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.transformer.moe import moe_utils
    return moe_utils


def hf_router(arch):
    """The router of the first MoE layer of a tiny model of this architecture, and the architecture."""
    from transformers import AutoConfig, AutoModelForCausalLM
    arch = dict(arch)
    config = AutoConfig.for_model(**{**arch, "vocab_size": arch.get("vocab_size") or 128})
    model = AutoModelForCausalLM.from_config(config)
    block = next(layer.mlp for layer in model.model.layers if hasattr(layer.mlp, "gate")
                 or hasattr(layer.mlp, "router"))
    return getattr(block, "gate", None) or block.router, arch


def flag_config(extra: str, world: int = 1, **overrides):
    """The engine config a family's flags translate to (plus FSDP2 names as overrides); `extra` is added to BASE, or
    is (base argv, extra) for a family whose base differs (LayerNorm families)."""
    from megatron_compat.translate import translate
    base, extra = extra if isinstance(extra, tuple) else (BASE, extra)
    gpt_oss = "--quick-geglu" in extra.split()  # gpt-oss: quick-GeGLU instead of SwiGLU, Megatron's biases kept
    base = [w for w in base if not gpt_oss or w not in ("--disable-bias-linear", "--swiglu")]
    argv = base + extra.split() + [w for k, v in overrides.items() for w in (f"--{k}", str(v))]
    result = translate(argv, world_size=world)
    assert result.ok, result.problems()
    return result.config


def run_flags(run):
    """On every rank: train the family's flag set; run = (output dir, flags, FSDP2 overrides, probe tokens or None).
    With probe tokens the model is exported to <output dir>/hf and its logits on them are returned."""
    from fsdp2_core.train import run_training
    out_dir, extra, over, probe = run
    cfg = flag_config(extra, int(os.environ["WORLD_SIZE"]), output_dir=out_dir, **over)
    hooks = RecordAndExport(os.path.join(out_dir, "hf") if probe is not None else None, probe)
    summary = run_training(cfg, datasets=(PatternDataset(64),), checkpoint=hooks, print_fn=hooks.lines.append)
    summary.update(lines=hooks.lines, expert_bias=hooks.biases, hf_dir=hooks.hf_dir,
                   probe_logits=None if hooks.probe_logits is None else hooks.probe_logits.numpy())
    return summary  # plain Python and numpy: tensors would be shared through file descriptors of a finished process


class RecordAndExport:
    """Checkpoint hooks that keep the iteration lines and the expert biases after each step and, given a directory,
    export the Hugging Face model at the end and keep the trained model's logits on the probe tokens."""

    def __init__(self, hf_dir=None, probe=None):
        self.hf_dir, self.probe, self.lines, self.biases, self.probe_logits = hf_dir, probe, [], [], None

    def load(self, *_):
        pass

    def after_step(self, state, model, *_):
        from fsdp2_core.models.router_losses import expert_bias
        blocks = getattr(model, "_fsdp2_moe_blocks", None) or []
        self.biases.append([expert_bias(b).tolist() for b in blocks if expert_bias(b) is not None])
        return False

    def finish(self, state, model, *_):
        if self.hf_dir:
            from fsdp2_core.checkpoint.hf_export import export_model
            export_model(model, self.hf_dir)
            self.probe_logits = logits_of(model, self.probe)


def spawn_flag_runs(world, tmp, runs, timeout=900):
    """runs: [(flags, overrides, export)]; every rank's summaries, run by run."""
    runs = [(os.path.join(str(tmp), f"run{i}"), extra, over, export) for i, (extra, over, export) in enumerate(runs)]
    return spawn_runs(world, run_flags, runs, timeout=timeout)


def logits_of(model, tokens):
    """The model's logits in evaluation mode (no dropout), as the exported model computes them."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(input_ids=tokens, use_cache=False).logits
    finally:
        model.train(training)


def export_with_trained_logits(summary, probe):
    """The Hugging Face export of a training run, loaded with from_pretrained; asserts it gives the trained model's
    logits on `probe` (the run's probe_logits) and returns it for the caller's config checks."""
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(summary["hf_dir"], dtype=torch.float32)
    with torch.no_grad():
        logits = hf(input_ids=probe, use_cache=False).logits
    torch.testing.assert_close(logits, torch.as_tensor(summary["probe_logits"]), rtol=1e-4, atol=1e-4)
    return hf

