"""fsdp2_core: the PyTorch-native FSDP2 engine. Everything here sees only the canonical config."""
