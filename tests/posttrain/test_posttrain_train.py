"""posttrain_gpt.py end to end on CPU: the public Qwen3-8B fine-tuning examples, shrunk, on an instruction dataset
written by our preprocessing in MindSpeed-LLM's layout, a tiny Hugging Face Qwen3 as --load, a local tokenizer."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from fsdp2_core.testing.spawn import free_port
from tests.lf.lf_helpers import ALPACA
from tests.posttrain.posttrain_helpers import (
    FULL_EXAMPLE,
    LORA_EXAMPLE,
    ROOT,
    instruction_data,
    real_argvs,
    shrink,
    tiny_qwen3,
)

LOSS = re.compile(r" iteration +(\d+)/ +(\d+) \|.*? lm loss: ([\d.E+-]+) \|")
REAL = real_argvs()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tok_dir):
    tmp = tmp_path_factory.mktemp("posttrain")
    return {"tok": tok_dir, "data": instruction_data(tmp, tok_dir), "hf": tiny_qwen3(str(tmp / "hf"))}


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, FSDP2_DEVICE="cpu", OMP_NUM_THREADS="1",
                HF_DATASETS_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1")


def _launch(args, cwd, nproc=1):
    cmd = [sys.executable, os.path.join(ROOT, "posttrain_gpt.py"), *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
               str(free_port()), *cmd[1:]]
    proc = subprocess.run(cmd, cwd=str(cwd), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return [float(m.group(3)) for m in LOSS.finditer(proc.stdout)], proc


@pytest.mark.subprocess
def test_full_finetuning_example_trains_with_prompt_masked(setup, tmp_path):
    args = shrink(REAL[FULL_EXAMPLE]["args"], setup["data"], setup["tok"], setup["hf"], str(tmp_path / "save"))
    # what the run reads: every trained target is a response token (prompts masked), shifted by one
    from transformers import AutoTokenizer

    from fsdp2_core.train.data import build_datasets, build_tokenizer
    from megatron_compat.translate import translate
    cfg = translate(args, world_size=1, entry="posttrain_gpt.py").config
    assert cfg.data.is_instruction_dataset and cfg.training.finetune and cfg.parallel.param_dtype == "bf16"
    train, valid, _ = build_datasets(cfg, 12, 4, build_tokenizer(cfg))
    assert valid is None and len(train) == len(ALPACA) * 4  # whole epochs covering 12 × 4 samples
    tok = AutoTokenizer.from_pretrained(setup["tok"])
    responses = {f"{r['output']}<|im_end|>\n" for r in ALPACA}
    batch = train.collate_fn([train[i] for i in range(len(ALPACA))])
    for row in range(len(ALPACA)):
        mask = batch["loss_mask"][row].bool()
        targets = tok.decode(batch["labels"][row][mask])
        # MindSpeed-LLM's qwen3 prompt without --enable-thinking (none) writes no thought block
        assert targets in responses, targets
        assert torch.equal(batch["labels"][row][:-1][mask[:-1]], batch["tokens"][row][1:][mask[:-1]])  # next token
    assert sorted({train.order[i] for i in range(len(ALPACA))}) == list(range(len(ALPACA)))  # one shuffled epoch

    losses, _ = _launch(args, tmp_path)
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0], losses
    assert os.path.isfile(tmp_path / "save" / "latest_checkpointed_iteration.txt")


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.subprocess
def test_lora_example_trains_only_adapters_under_fsdp(setup, tmp_path):
    """Two gloo ranks (FSDP2 shards base weights and adapters): the loss falls, the export holds the adapter and,
    merged, exactly base + alpha/r · B·A on the target modules and the untouched base everywhere else."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    save = tmp_path / "save"
    args = shrink(REAL[LORA_EXAMPLE]["args"], setup["data"], setup["tok"], setup["hf"], str(save))
    losses, proc = _launch(args + ["--save-lora-to-hf", "--lora_merge_on_export", "true"], tmp_path, nproc=2)
    assert len(losses) == 12 and losses[-1] < losses[0], losses
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in proc.stderr

    adapter = load_file(str(save / "hf_adapter" / "adapter_model.safetensors"))
    base = load_file(os.path.join(setup["hf"], "model.safetensors"))
    merged = load_file(str(save / "hf_model" / "model.safetensors"))
    assert set(merged) == set(base)
    scale = 32.0 / 16  # MindSpeed's example: --lora-alpha 32 --lora-r 16
    changed = 0
    for name, w in base.items():
        module = name[:-len(".weight")]
        a_key = f"base_model.model.{module}.lora_A.weight"
        if a_key in adapter:
            delta = scale * adapter[f"base_model.model.{module}.lora_B.weight"].float() @ adapter[a_key].float()
            torch.testing.assert_close(merged[name].float(), w.float() + delta, rtol=0, atol=1e-5)
            changed += int(delta.abs().max() > 0)
        else:
            assert torch.equal(merged[name], w), name  # frozen: embeddings, norms, lm_head
    assert changed == 2 * 7  # every adapter of both layers trained (B starts at zero)

    x = torch.tensor([[1, 105, 338, 219, 3, 219, 219, 4]])
    with torch.no_grad():
        peft_logits = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(setup["hf"]),
                                                str(save / "hf_adapter"))(x).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(str(save / "hf_model"))(x).logits
    torch.testing.assert_close(peft_logits, merged_logits, rtol=1e-4, atol=1e-4)


def test_apply_lora_freezes_all_but_adapters(setup):
    from transformers import AutoModelForCausalLM

    from fsdp2_core.config import build_config
    from fsdp2_core.models.lora import apply_lora, is_adapter
    cfg = build_config({"model_name_or_path": setup["hf"], "output_dir": "/tmp/x", "lora_r": 4,
                        "lora_target_modules": ["linear_proj", "linear_fc2"]})
    model = apply_lora(AutoModelForCausalLM.from_pretrained(setup["hf"]), cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(is_adapter(n) for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"o_proj", "down_proj"}
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():  # B = 0 at the start: the adapted model computes what the base computes
        base = AutoModelForCausalLM.from_pretrained(setup["hf"])(x).logits
        torch.testing.assert_close(model(x).logits, base)
    assert np.isclose(model.lora_config.lora_alpha / model.lora_config.r, 8.0)
