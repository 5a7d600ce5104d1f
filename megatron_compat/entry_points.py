"""Which training script a launch line starts, judged by what it trains.

Megatron-LM's and MindSpeed-LLM's `pretrain_gpt.py` / `posttrain_gpt.py` are taken as they are. The research
forks rename their entry points (`pretrain_qwen.py`, `pretrain_megatron_llama.py`, `pretrain_gpt_*.py`, ...)
while training the same decoder-only models with the same flags (FORK_ENTRIES names the ones known), so any other
script is judged by its flags:
a decoder's architecture flags and none of another family's make it GPT-style. Megatron's entry points for
other families (BERT, T5, vision, ...) are refused by name; `pretrain_hybrid.py` / `pretrain_mamba.py` train a
decoder-only LM (Mamba2, attention and MLP layers by a pattern: the nemotron_h family, megatron_compat/arch/hybrid.py),
so they are converted as pretrain_gpt.py with their layer pattern.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

GPT_ENTRIES = ("pretrain_gpt.py", "posttrain_gpt.py")
# Fork entry points known by name to train a GPT-style decoder, and what they train
FORK_ENTRIES = {
    "pretrain_qwen3_next.py": "Qwen3-Next (Pai-Megatron-Patch's examples/qwen3_next: a GPT-style decoder with Gated "
                              "DeltaNet layers, docs/architectures_from_flags.md)",
}
HYBRID_ENTRIES = ("pretrain_hybrid.py", "pretrain_mamba.py")
# What gives a hybrid model its layers (megatron_compat/arch/hybrid.py reads them)
HYBRID_LAYER_FLAGS = ("--hybrid-layer-pattern", "--hybrid-override-pattern", "--hybrid-attention-ratio",
                      "--hybrid-mlp-ratio", "--is-hybrid-model")
OTHER_ENTRIES = {
    "pretrain_bert.py": "BERT", "pretrain_t5.py": "T5", "pretrain_vlm.py": "vision-language",
    "pretrain_retro.py": "RETRO",
    "pretrain_ict.py": "ICT retriever", "pretrain_vision_classify.py": "vision", "pretrain_vision_dino.py": "vision",
    "pretrain_vision_inpaint.py": "vision",
    "pretrain_codegeex.py": "CodeGeeX (a GPT with its own top query layer)",
}
# A flag that only another family's model takes, and that family
FAMILY_FLAGS = {
    "--encoder-num-layers": "T5 encoder-decoder", "--decoder-num-layers": "T5 encoder-decoder",
    "--encoder-seq-length": "encoder (BERT / T5)", "--decoder-seq-length": "T5 encoder-decoder",
    "--bert-no-binary-head": "BERT", "--bert-binary-head": "BERT", "--bert-load": "BERT",
    "--img-h": "vision", "--img-w": "vision", "--patch-dim": "vision", "--vision-backbone-type": "vision",
    "--vision-pretraining": "vision", "--vision-model-type": "vision-language", "--freeze-ViT": "vision-language",
    "--retro-project-dir": "RETRO", "--retro-add-retriever": "RETRO", "--ict-head-size": "ICT retriever",
    "--biencoder-projection-dim": "ICT retriever", "--use-lf-gate": "Yuan 2.0 (Localized Filtering attention)",
}
# The flags that describe a decoder's shape: a script that trains a GPT-style model gives them
DECODER_FLAGS = ("--num-layers", "--hidden-size", "--num-attention-heads")


@dataclass
class EntryJudgement:
    entry: str                     # the script's file name
    translate_as: str | None       # pretrain_gpt.py / posttrain_gpt.py, or None when refused
    note: str | None = None        # how a renamed entry point was judged, for the report
    problem: str | None = None     # why it is refused


def judge_entry(entry: str, argv: Sequence[str]) -> EntryJudgement:
    """Whether the script `entry`, given `argv`, trains a GPT-style decoder this engine can train."""
    name = os.path.basename(entry)
    flags = {a.partition("=")[0] for a in argv if a.startswith("--")}
    if name in GPT_ENTRIES:
        return EntryJudgement(name, name)
    if name in FORK_ENTRIES and any(flag in flags for flag in HYBRID_LAYER_FLAGS):
        return _refused(name, "is given a hybrid layer pattern (--hybrid-override-pattern / --hybrid-*-ratio / "
                              "--is-hybrid-model), whose M layers its own layer spec builds as Gated DeltaNet, not "
                              "Megatron's Mamba2; give Qwen3-Next's flags instead (--linear-attention-freq, "
                              "--linear-num-key-heads, ..., docs/architectures_from_flags.md)")
    if name in FORK_ENTRIES:
        return EntryJudgement(name, "pretrain_gpt.py", note=f"entry point {name} trains {FORK_ENTRIES[name]}; "
                                                              "converted as pretrain_gpt.py")
    if name in HYBRID_ENTRIES:
        return _hybrid(name, flags)
    if name in OTHER_ENTRIES:
        return _refused(name, f"trains a {OTHER_ENTRIES[name]} model", other_family=True)
    if not name.endswith(".py"):
        return _refused(name or "''", "is not a Python script (a module run with -m, or a word of a value split "
                                      "in two?)")
    family = next(((flag, FAMILY_FLAGS[flag]) for flag in sorted(flags) if flag in FAMILY_FLAGS), None)
    if family is not None:
        return _refused(name, f"trains a {family[1]} model (it is given {family[0]})", other_family=True)
    missing = [flag for flag in DECODER_FLAGS if flag not in flags]
    if missing:
        return _refused(name, f"does not describe a model to train (it is not given {', '.join(missing)}: "
                              f"a data or evaluation step, not training?)")
    translate_as = "posttrain_gpt.py" if "--stage" in flags else "pretrain_gpt.py"
    note = (f"entry point {name} is not Megatron's {translate_as}; judged a GPT-style decoder by its flags "
            f"({', '.join(DECODER_FLAGS)} and no other family's), so it is converted as {translate_as}")
    return EntryJudgement(name, translate_as, note=note)


def _hybrid(name: str, flags) -> EntryJudgement:
    """Megatron's hybrid Mamba entry points: a decoder-only LM whose layers the pattern (or ratios) gives."""
    if not any(flag in flags for flag in HYBRID_LAYER_FLAGS):
        return _refused(name, "is given no layer pattern (--hybrid-layer-pattern, --hybrid-override-pattern, the "
                              "--hybrid-*-ratio flags or --is-hybrid-model): Megatron then makes every layer Mamba2, "
                              "while the flags alone would describe a transformer here; add --is-hybrid-model for "
                              "that, or --hybrid-layer-pattern with one symbol a layer (M Mamba2, * attention, - MLP)")
    return EntryJudgement(name, "pretrain_gpt.py",
                          note=f"entry point {name} trains Megatron's hybrid Mamba model, a decoder-only LM (Mamba2, "
                               "attention and MLP layers by its pattern): converted as pretrain_gpt.py with the "
                               "nemotron_h family")


def _refused(name: str, why: str, other_family: bool = False) -> EntryJudgement:
    advice = ". Use Megatron-LM for this model family" if other_family else ""
    return EntryJudgement(name, None, problem=f"entry point {name} {why}; the engine trains decoder-only GPT-style "
                                              f"models (pretrain_gpt.py / posttrain_gpt.py){advice}")
