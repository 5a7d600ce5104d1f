"""tools/convert_args.py on a Megatron-LM functional-test model_config.yaml: the launch its launcher builds from
MODEL_ARGS (true: bare flag, empty: left out, other: --flag="value") and ENV_VARS, with ${NAME} left to --set."""
from fsdp2_core.config import load_config
from megatron_compat.functional_tests import launch_text, model_config, training_script
from tools import convert_args

CONFIG = """\
ENV_VARS:
  CUDA_DEVICE_MAX_CONNECTIONS: 1
TEST_TYPE: regular
MODEL_ARGS:
  --num-layers: 2
  --hidden-size: 64
  --num-attention-heads: 4
  --seq-length: 32
  --max-position-embeddings: 32
  --micro-batch-size: 2
  --global-batch-size: 8
  --train-iters: 10
  --lr: 1.0e-3
  --position-embedding-type: rope
  --normalization: RMSNorm
  --swiglu: true
  --hidden-dropout: 0.0
  --disable-bias-linear: true
  --untie-embeddings-and-output-weights: false
  --exit-interval: ""
  --tokenizer-type: NullTokenizer
  --vocab-size: 100
  --data-path: ${DATA_PATH}/text_document
  --save: ${CHECKPOINT_SAVE_PATH}
  --split: 99,1,0
"""


def test_model_config_becomes_the_launch_its_launcher_builds(tmp_path):
    config = model_config(CONFIG)
    text = launch_text(config, "pretrain_gpt.py")
    assert text.splitlines()[0] == 'export CUDA_DEVICE_MAX_CONNECTIONS="1"'
    launch = text.splitlines()[1]
    assert launch.startswith("torchrun --nproc_per_node $GPUS_PER_NODE --nnodes $NUM_NODES pretrain_gpt.py ")
    assert ' --swiglu ' in launch and '--num-layers="2"' in launch and '--save="${CHECKPOINT_SAVE_PATH}"' in launch
    assert "--exit-interval" not in launch and '--untie-embeddings-and-output-weights="false"' in launch
    assert model_config("MODEL_ARGS: [1, 2]\n") is None and model_config("a: b\n") is None
    case = tmp_path / "tests" / "functional_tests" / "test_cases" / "bert" / "case" / "model_config.yaml"
    assert training_script(str(case), {}) == "pretrain_bert.py"
    assert training_script(str(case), {"TRAINING_SCRIPT_PATH": "x.py"}) == "x.py"


def test_convert_args_reads_a_functional_test_config(tmp_path, capsys):
    case = tmp_path / "test_cases" / "gpt" / "tiny" / "model_config.yaml"
    case.parent.mkdir(parents=True)
    case.write_text(CONFIG)
    out = tmp_path / "tiny.yaml"
    argv = [str(case), "-o", str(out), "--script-out", str(tmp_path / "tiny.sh")]
    convert_args.main(argv)
    assert "variable ${DATA_PATH} is not set" in capsys.readouterr().err  # the launcher's envsubst variable, named
    assert convert_args.main(argv + ["--set", "DATA_PATH=/data", "--set", "CHECKPOINT_SAVE_PATH=/ckpt"]) == 0
    cfg = load_config(str(out))
    assert (cfg.data.dataset, cfg.training.output_dir, cfg.model.architecture["num_hidden_layers"]) == \
        ("/data/text_document", "/ckpt", 2)
    assert cfg.model.architecture["tie_word_embeddings"] is True  # `false`: the switch is not given
