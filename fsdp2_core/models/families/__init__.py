"""The project's own forwards, one file per family; `fsdp2_core.models.registry` lists them."""
