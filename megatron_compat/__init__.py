"""megatron_compat: reads Megatron-LM / MindSpeed-LLM flags and launch scripts into the canonical config."""
