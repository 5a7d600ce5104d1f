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
        "--seed 11 --log-interval 1").split()

# DeepSeek-V3-style: MLA with a q LoRA, a sigmoid router with expert bias, 4 groups of 2 experts (top 2 groups),
# scaling 2.5, one shared expert, the first layer dense, the sequence aux loss, z-loss and one MTP layer.
DSV3 = ("--multi-latent-attention --qk-layernorm --q-lora-rank 16 --kv-lora-rank 16 --qk-head-dim 8 "
        "--qk-pos-emb-head-dim 8 --v-head-dim 8 --num-experts 8 --moe-router-topk 4 --moe-ffn-hidden-size 16 "
        "--moe-shared-expert-intermediate-size 16 --moe-router-score-function sigmoid --moe-router-enable-expert-bias "
        "--moe-router-bias-update-rate 1e-2 --moe-router-num-groups 4 --moe-router-group-topk 2 "
        "--moe-router-topk-scaling-factor 2.5 --moe-router-load-balancing-type seq_aux_loss --moe-aux-loss-coeff 1e-3 "
        "--moe-layer-freq [0]*1+[1]*2 --mtp-num-layers 1 --mtp-loss-scaling-factor 0.3 --moe-z-loss-coeff 1e-3")
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

class PatternDataset(SyntheticDataset):
    """Samples a model can learn in a few steps: each token follows from the one before (t' = 5t + 3 mod V)."""

    def __init__(self, n: int, seed: int = 0):
        super().__init__(n, seed=seed)
        for i in range(1, self.text.shape[1]):
            self.text[:, i] = (5 * self.text[:, i - 1] + 3) % VOCAB


FAMILIES = {"deepseek_v3": DSV3, "glm4_moe": GLM45, "qwen2_moe": QWEN2_MOE, "qwen3_moe": QWEN3_MOE,
            "llama": LLAMA31, "mistral": MISTRAL}


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
    block = next(layer.mlp for layer in model.model.layers if hasattr(layer.mlp, "gate"))
    return block.gate, arch


def flag_config(extra: str, world: int = 1, **overrides):
    """The engine config a family's flags translate to (plus FSDP2 names as overrides)."""
    from megatron_compat.translate import translate
    argv = BASE + extra.split() + [w for k, v in overrides.items() for w in (f"--{k}", str(v))]
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
    with torch.no_grad():
        return model(input_ids=tokens, use_cache=False).logits
