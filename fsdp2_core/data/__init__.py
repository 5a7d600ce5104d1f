"""Training data, one subpackage per world: `megatron` (.bin/.idx, GPT sample order), `lf` (LLaMA-Factory style
fine-tuning data), `mindspeed` (MindSpeed-LLM instruction datasets); `tokenizers` and `cache` are shared."""
