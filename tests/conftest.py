"""Settings every test shares: CPU only, quiet progress bars, one thread per spawned rank's tokenizer."""
import os

# Inherited by every rank and subprocess a test starts.
os.environ.setdefault("FSDP2_DEVICE", "cpu")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
