"""Our forward of the new families (token dispatch with shared experts beside the routed ones) equals transformers'
own, and the multi-token-prediction layers are DeepSeek-V3's: the export loads with from_pretrained (same logits)
and transformers' MtpModel reads our MTP layer back with the same predictions and loss."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsdp2_core.checkpoint.hf_export import export_model
from fsdp2_core.models.build import build_model
from fsdp2_core.models.mtp import depth_inputs, mtp_hidden_states
from fsdp2_core.testing.tiny import SyntheticDataset, tiny_config
from fsdp2_core.train.loss import lm_loss_sums
from tests.arch.arch_helpers import (
    DSV2,
    DSV2_MINDSPEED,
    DSV3,
    GLM45,
    GPT_OSS,
    MINIMAX_M2,
    QWEN2_MOE,
    flag_config,
    logits_of,
)

CPU = torch.device("cpu")


def _build(arch, **over):
    return build_model(tiny_config("/tmp/unused", architecture=arch, **over), CPU, meta=False, seed=5)


def _batch():
    ds = SyntheticDataset(4)
    return {k: torch.as_tensor(np.stack([ds[i][k] for i in range(2)])) for k in ds[0]}


def _with_expert_bias(model):
    """A nonzero expert bias (the same in every model built), so the routing's bias term is exercised."""
    with torch.no_grad():
        for name, bias in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                bias.copy_(torch.linspace(-0.3, 0.3, bias.numel()).flip(0))
    return model


def _loss_and_grads(model, b):
    s, n = lm_loss_sums(model, b["tokens"], b["labels"], b["loss_mask"], b["position_ids"])
    loss = s / n
    loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("flags", [DSV3, GLM45, QWEN2_MOE, DSV2, DSV2_MINDSPEED, GPT_OSS, MINIMAX_M2],
                         ids=["deepseek_v3", "glm4_moe", "qwen2_moe", "deepseek_v2", "deepseek_v2_mindspeed",
                              "gpt_oss", "minimax_m2"])
@pytest.mark.parametrize("dispatcher", ["eager", "fused"])
def test_our_forward_equals_transformers(flags, dispatcher):
    cfg = flag_config(flags)
    arch = dict(cfg.model.architecture, output_router_logits=False)
    b = _batch()
    plain_loss, plain_grads = _loss_and_grads(_with_expert_bias(_build(arch)), b)
    ours = _with_expert_bias(_build(arch, model_id=cfg.model.model_id, ep_dispatcher=dispatcher))
    loss, grads = _loss_and_grads(ours, b)
    assert abs(loss - plain_loss) < 1e-5 * plain_loss
    assert grads.keys() == plain_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)


def test_minimax_m2_refuses_tensor_parallelism():
    """Its q/k norms span all heads of a layer, which tensor parallelism would split."""
    from fsdp2_core.config import ConfigError
    cfg = flag_config(MINIMAX_M2, 2, **{"tensor-model-parallel-size": 2})
    with pytest.raises(ConfigError, match="normalises q and k over all heads"):
        build_model(cfg, CPU, meta=False, seed=5)


def test_chunked_loss_covers_the_mtp_heads():
    model = _build(flag_config(DSV3).model.architecture, model_id="deepseek_v3", mtp_num_layers=1)
    b = _batch()
    with torch.no_grad():
        whole = lm_loss_sums(model, b["tokens"], b["labels"], b["loss_mask"], b["position_ids"])
        whole_mtp = model.last_mtp_sums
        chunked = lm_loss_sums(model, b["tokens"], b["labels"], b["loss_mask"], b["position_ids"], chunk_size=8)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(model.last_mtp_sums, whole_mtp)


@pytest.mark.slow
def test_mtp_export_is_deepseek_v3_layout(tmp_path):
    from transformers import AutoModelForCausalLM
    from transformers.modeling_layers import MtpModel
    cfg = flag_config(DSV3, output_dir=str(tmp_path))
    model = build_model(cfg, CPU, meta=False, seed=5)
    b = _batch()
    with torch.no_grad():
        lm_loss_sums(model, b["tokens"], b["labels"], b["loss_mask"], b["position_ids"])
        (mtp_sum, mtp_count), = model.last_mtp_sums
        export_model(model, str(tmp_path / "hf"))
        hidden = model.model(input_ids=b["tokens"], use_cache=False).last_hidden_state
        tokens, labels, mask = depth_inputs(b["tokens"], b["labels"], b["loss_mask"], 1)[0]
        ours = model.lm_head(mtp_hidden_states(model, hidden, [tokens], b["position_ids"])[0])
    names = set(__import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(tmp_path / "hf" / "model.safetensors")))
    layer = "model.layers.3."  # num_hidden_layers 3: the MTP layer follows
    assert {layer + n for n in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight",
                                "embed_tokens.weight", "shared_head.head.weight", "mlp.gate.e_score_correction_bias",
                                "self_attn.kv_b_proj.weight")} <= names
    main = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32)
    torch.testing.assert_close(logits_of(main, b["tokens"]), logits_of(model, b["tokens"]), rtol=1e-5, atol=1e-5)
    # transformers finds the MTP weights by DeepSeek-V3's own layer number (model.layers.61); ours is 3
    main._keys_to_ignore_on_load_unexpected = [r"model\.layers\.3.*"]
    mtp = MtpModel.from_pretrained(main)
    with torch.no_grad():
        base = main.model(input_ids=b["tokens"], use_cache=False).last_hidden_state
        position_embeddings = main.model.rotary_emb(base, b["position_ids"])
        out = mtp.layers[0](main.model.embed_tokens(tokens), base, position_embeddings=position_embeddings,
                            attention_mask=None, position_ids=b["position_ids"], cache=None)
        theirs = main.lm_head(out)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    ce = F.cross_entropy(theirs.reshape(-1, theirs.shape[-1]), labels.reshape(-1), reduction="none") * mask.reshape(-1)
    assert float(mtp_count) == float(mask.sum()) == 2 * (32 - 1)
    torch.testing.assert_close(ce.sum(), mtp_sum, rtol=1e-5, atol=1e-5)
