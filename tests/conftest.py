"""Settings every test shares: CPU only, quiet progress bars, one thread per spawned rank's tokenizer."""
import os

import pytest

# Inherited by every rank and subprocess a test starts.
os.environ.setdefault("FSDP2_DEVICE", "cpu")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _environment_and_directory_restored():
    """What one test changes in os.environ or the working directory never reaches the next one.

    Code under test exports launcher variables (WORLD_SIZE, RANK, MASTER_PORT ...) into os.environ, as it must for
    torch.distributed; left behind, they change the batch arithmetic of every later in-process translation."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    yield
    if os.environ != saved_env:
        os.environ.clear()
        os.environ.update(saved_env)
    if os.getcwd() != saved_cwd:
        os.chdir(saved_cwd)
