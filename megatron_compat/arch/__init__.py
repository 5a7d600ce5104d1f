"""The parts of a Megatron architecture that map to more than a plain field: the MoE router and experts
(moe.py), RoPE scaling (rope.py), Multi-Latent Attention and sliding windows (attention.py). Each module reads
its flags into Hugging Face config fields and writes them back as flags (the reverse conversion)."""


class ArchitectureError(ValueError):
    """Architecture flags that no Hugging Face family here can honour; the message names them."""
