"""megatron-core 0.16's own GPTModel (local spec, one CPU process) for a family's flag set, and its logits beside
the Hugging Face model the flags translate to (gpt_neox, gpt_bigcode), with the same weights copied across by name."""
import torch

from tests.megatron_ckpt.mcore import patch_for_cpu

# megatron-core local-spec name (layer i) -> Hugging Face gpt_neox name; q/k/v are fused per head in both.
NEOX_NAMES = {
    "embedding.word_embeddings.weight": "gpt_neox.embed_in.weight",
    "decoder.final_layernorm.weight": "gpt_neox.final_layer_norm.weight",
    "decoder.final_layernorm.bias": "gpt_neox.final_layer_norm.bias",
    "output_layer.weight": "lm_head.weight",
}
NEOX_LAYER = {
    "input_layernorm": "input_layernorm", "self_attention.linear_qkv": "attention.query_key_value",
    "self_attention.linear_proj": "attention.dense", "pre_mlp_layernorm": "post_attention_layernorm",
    "mlp.linear_fc1": "mlp.dense_h_to_4h", "mlp.linear_fc2": "mlp.dense_4h_to_h",
}


# ... -> gpt_bigcode; with one query group Megatron's linear_qkv is [all queries | key | value], as c_attn is.
BIGCODE_NAMES = {
    "embedding.word_embeddings.weight": "transformer.wte.weight",
    "embedding.position_embeddings.weight": "transformer.wpe.weight",
    "decoder.final_layernorm.weight": "transformer.ln_f.weight",
    "decoder.final_layernorm.bias": "transformer.ln_f.bias",
    "output_layer.weight": "lm_head.weight",
}
BIGCODE_LAYER = {
    "input_layernorm": "ln_1", "self_attention.linear_qkv": "attn.c_attn", "self_attention.linear_proj": "attn.c_proj",
    "pre_mlp_layernorm": "ln_2", "mlp.linear_fc1": "mlp.c_fc", "mlp.linear_fc2": "mlp.c_proj",
}
FAMILY_NAMES = {"gpt_neox": (NEOX_NAMES, NEOX_LAYER, "gpt_neox.layers"),
                "gpt_bigcode": (BIGCODE_NAMES, BIGCODE_LAYER, "transformer.h")}


def hf_name(family: str, name: str) -> str:
    whole, layer, layers = FAMILY_NAMES[family]
    if name in whole:
        return whole[name]
    _, _, i, rest = name.split(".", 3)  # decoder.layers.<i>.<module>.<weight|bias>
    module, param = rest.rsplit(".", 1)
    return f"{layers}.{i}.{layer[module]}.{param}"


def megatron_and_hf_logits(config_kwargs: dict, gpt_kwargs: dict, arch: dict, tokens: torch.Tensor, to_hf=None):
    """On a world of one: megatron-core's logits and the Hugging Face family's for the same weights (perturbed so
    biases and norms matter). to_hf(megatron state) -> Hugging Face state, for families not renamed by FAMILY_NAMES."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer import TransformerConfig
    from transformers import AutoConfig, AutoModelForCausalLM
    patch_for_cpu()
    dist.init_process_group("gloo")
    ps.initialize_model_parallel(1, 1)
    torch.manual_seed(0)
    config = TransformerConfig(use_cpu_initialization=True, pipeline_dtype=torch.float32, masked_softmax_fusion=False,
                               persist_layer_norm=False, bias_dropout_fusion=False, hidden_dropout=0.0,
                               attention_dropout=0.0, **config_kwargs)
    spec = get_gpt_layer_local_spec(normalization=config_kwargs.get("normalization", "LayerNorm"))
    model = GPTModel(config, spec, **gpt_kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    hf = AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch)).eval()
    megatron_state = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    state = to_hf(megatron_state) if to_hf else {hf_name(arch["model_type"], k): v for k, v in megatron_state.items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and not [m for m in missing if "rotary" not in m], (missing, unexpected)
    pos = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
    mask = torch.triu(torch.ones(1, 1, tokens.shape[1], tokens.shape[1], dtype=torch.bool), 1)
    with torch.no_grad():
        theirs = model(tokens, pos, mask).float()
        ours = hf(input_ids=tokens, use_cache=False).logits.float()
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    return theirs.numpy(), ours.numpy()
