"""Megatron-LM checkpoints: read both formats, continue a run from one, write one back.

    detect      a save directory or iter_XXXXXXX / release directory -> format (torch | torch_dist), iteration
    safe_load   Megatron's pickles under weights_only=True and an allow-list (Namespace, Megatron's enums, numpy RNG)
    layout      canonical Megatron names (global layer / expert numbers, whole tensors), tensor-parallel split rules
    read_legacy mp_rank_TT[_PPP][_EEE]/model_optim_rng.pt: TP shards joined, PP / virtual stages and experts numbered
    read_dist   torch_dist (megatron.core.dist_checkpointing) through torch.distributed.checkpoint, a layer at a time
    checkpoint  one opened checkpoint: args, iteration, consumed samples, scheduler, tensors
    names       Megatron <-> Hugging Face tensors per family (fused QKV, SwiGLU fc1, experts, GPT-2 Conv1D)
    to_hf       a Megatron checkpoint -> a Hugging Face model directory
    resume      continue a Megatron run (weights, counters, LR schedule, RNG); moments: Adam state where mappable
    hf_source   the Hugging Face tensors of a model directory or of one of our checkpoints
    write       Hugging Face tensors -> a Megatron-LM checkpoint (torch_dist or torch, target TP/PP, TE or local names)

The architecture of a checkpoint comes from its saved args through megatron_compat (the layer above), which
hands this package a transformers config: nothing here reads a Megatron flag.
"""
