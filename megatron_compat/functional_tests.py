"""Megatron-LM's functional-test configs (tests/functional_tests/test_cases/<model>/<case>/model_config.yaml).

Their launcher (tests/functional_tests/shell_test_utils/_run_training.sh) reads the flags with yq and eval, which
no static reader follows; the config itself is read here instead and written as the launch the launcher makes:

    export NAME="VALUE"                                 each ENV_VARS entry
    torchrun --nproc_per_node $GPUS_PER_NODE --nnodes $NUM_NODES SCRIPT --flag="value" ...

A MODEL_ARGS value `true` gives the bare flag, an empty one leaves the flag out, any other is written
--flag="value" (one argument, as the launcher quotes it). `${NAME}` references stay: the launcher fills them from
its environment (envsubst), so here they are the script's unset variables (give them with --set NAME=VALUE).
The training script comes from the test-case folder (gpt, moe, mixtral -> pretrain_gpt.py, ...), or from
--set TRAINING_SCRIPT_PATH=...
"""
import os
from typing import Any, Dict, Optional

import yaml

SCRIPT_OF_MODEL = {"gpt": "pretrain_gpt.py", "moe": "pretrain_gpt.py", "mixtral": "pretrain_gpt.py",
                   "bert": "pretrain_bert.py", "t5": "pretrain_t5.py", "hybrid": "pretrain_hybrid.py",
                   "mamba": "pretrain_mamba.py", "retro": "pretrain_retro.py"}


def model_config(text: str) -> Optional[Dict[str, Any]]:
    """The parsed config when `text` is a functional-test model_config.yaml (it has a MODEL_ARGS mapping)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("MODEL_ARGS"), dict) else None


def training_script(path: str, environ: Dict[str, str]) -> str:
    """TRAINING_SCRIPT_PATH as given, else the one of the test-case folder (test_cases/<model>/...)."""
    if environ.get("TRAINING_SCRIPT_PATH"):
        return environ["TRAINING_SCRIPT_PATH"]
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    model = parts[parts.index("test_cases") + 1] if "test_cases" in parts[:-2] else ""
    return SCRIPT_OF_MODEL.get(model, "pretrain_gpt.py")


def _quoted(value: Any) -> str:
    """A YAML value in double quotes, its ${NAME} references left to expand."""
    text = "true" if value is True else "false" if value is False else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def launch_text(config: Dict[str, Any], script: str) -> str:
    """The bash launch _run_training.sh makes of a model_config.yaml."""
    lines = [f"export {name}={_quoted(value)}" for name, value in (config.get("ENV_VARS") or {}).items()]
    args = []
    for flag, value in config["MODEL_ARGS"].items():
        if value is True:
            args.append(flag)
        elif value is not None and value != "":
            args.append(f"{flag}={_quoted(value)}")
    lines.append("torchrun --nproc_per_node $GPUS_PER_NODE --nnodes $NUM_NODES " + script + " " + " ".join(args))
    return "\n".join(lines) + "\n"
