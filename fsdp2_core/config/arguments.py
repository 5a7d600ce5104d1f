"""The canonical configuration: one dataclass per group of the FSDP2 parameter reference.

Field names, types and defaults follow `fsdp2_parameters.md` exactly. Fields marked
`extension=True` in their metadata are additions that carry Megatron semantics the
reference table lacks (LR decay steps, WSD, per-split data paths, tokenizer files,
the architecture for from-scratch training, ...). Every field has a `help` text; the
config reference in docs/ is generated from these.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Union

DTYPE = Literal["bf16", "fp16", "fp32"]


def _f(default, help, extension=False, **kw):
    """A dataclass field with its help text; list/dict defaults are copied per instance."""
    meta = {"help": help, "extension": extension}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


# Router settings of the engine's MoE forward (models/router_losses.py) that need a model_id with experts.
ROUTER_FIELDS = ("moe_seq_aux_loss_coeff", "moe_device_level_aux_loss_coeff", "moe_comm_aux_loss_coeff",
                 "moe_z_loss_coeff", "moe_router_bias_update_rate", "moe_router_force_load_balancing",
                 "moe_expert_capacity_factor")


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = _f(None, "Local path of a Hugging Face model. Required unless the architecture "
                                           "comes from Megatron flags (`architecture`).")
    model_id: Optional[Literal["deepseek_v2", "deepseek_v3", "deepseek_v32", "gpt_oss", "minimax_m2", "qwen2_moe",
                                "qwen3", "qwen3_moe"]] = _f(
        None, "Selects the project's own forward for this family; unset runs the plain transformers forward.")
    init_model_with_meta_device: bool = _f(False, "Build the model on the meta device, shard, then load or initialise "
                                           "shard by shard.")
    trust_remote_code: bool = _f(False, "Allow custom modelling code shipped with the checkpoint.")
    train_from_scratch: bool = _f(False, "Random initialisation; no weights are loaded.")
    tokenizer_name_or_path: Optional[str] = _f(None, "Tokenizer path when it differs from model_name_or_path.")
    cache_dir: Optional[str] = _f(None, "Cache directory for hub downloads.")
    use_fast_tokenizer: bool = _f(True, "Use the fast (tokenizers library) tokenizer.")
    resize_vocab: bool = _f(False, "Resize the tokenizer and the embedding/lm_head to fit added tokens.")
    split_special_tokens: bool = _f(False, "Split special tokens while tokenizing.")
    add_tokens: Optional[str] = _f(None, "Comma-separated non-special tokens to add.")
    add_special_tokens: Optional[str] = _f(None, "Comma-separated special tokens to add.")
    new_special_tokens_config: Optional[str] = _f(None, "YAML file {'<token>': 'description'} used to initialise new "
                                                  "special tokens; wins over add_special_tokens.")
    init_special_tokens: Literal["noise_init", "desc_init", "desc_init_w_noise"] = _f(
        "noise_init", "How new special tokens are initialised.")
    model_revision: str = _f("main", "Model revision (branch, tag or commit).")
    hf_hub_token: Optional[str] = _f(None, "Hugging Face Hub token.")
    ms_hub_token: Optional[str] = _f(None, "ModelScope Hub token.")
    om_hub_token: Optional[str] = _f(None, "Modelers Hub token.")
    quant_recipe: Optional[Literal["mxfp8"]] = _f(None, "Quantised training recipe.")
    quant_format: Optional[Literal["E4M3", "E5M2", "HIF8"]] = _f(None, "Quantised data format.")
    quant_block_size: int = _f(32, "Quantisation block size.")
    quant_apply_modules: List[str] = _f(["model.layers.{*}"], "Modules to quantise.")
    quant_ignored_modules: List[str] = _f(["lm_head"], "Sub-modules never quantised.")
    converters: List[str] = _f(["quantize.linear.mx"], "Quantisation converters to apply.")
    # --- extensions carrying Megatron semantics ---
    architecture: Optional[Dict[str, Any]] = _f(None, "A Hugging Face config (a dict with `model_type`) to build the "
                                                "model from, e.g. derived from Megatron's "
                                                "--num-layers/--hidden-size/... flags. With no model_name_or_path the "
                                                "run trains this architecture from scratch.", extension=True)
    tokenizer_type: Optional[str] = _f(None, "Megatron tokenizer type for pretraining data (HuggingFaceTokenizer, "
                                       "PretrainedFromHF, GPT2BPETokenizer, SentencePieceTokenizer, "
                                       "GPTSentencePieceTokenizer, Llama2Tokenizer, NullTokenizer, bigcode's "
                                       "TokenizerFromFile and TokenizerFromFileWithFIM).", extension=True)
    tokenizer_model: Optional[str] = _f(None, "Tokenizer model file or directory (--tokenizer-model; bigcode's "
                                        "--tokenizer-file).", extension=True)
    vocab_file: Optional[str] = _f(None, "Vocabulary file (--vocab-file), e.g. GPT-2 BPE vocab.json.", extension=True)
    merge_file: Optional[str] = _f(None, "BPE merge file (--merge-file).", extension=True)
    tokenizer_kwargs: Optional[Dict[str, str]] = _f(None, "Keyword arguments for the Hugging Face tokenizer, e.g. "
                                                    "{eos_token: <|endoftext|>} for a tokenizer that has none "
                                                    "(ModelLink's --tokenizer-kwargs KEY VALUE ...).", extension=True)
    vocab_size: Optional[int] = _f(None, "Vocabulary size before padding (--vocab-size; NullTokenizer needs it).",
                                   extension=True)
    make_vocab_size_divisible_by: int = _f(128, "Pad the vocabulary to a multiple of this times tp_size, as Megatron "
                                           "does.", extension=True)
    padded_vocab_size: Optional[int] = _f(None, "Explicit padded vocabulary size (--padded-vocab-size); wins over the "
                                          "computed padding.", extension=True)
    lora_r: int = _f(0, "LoRA rank (--lora-r). 0 trains every parameter; above 0 only the LoRA adapters train (peft), "
                     "on the modules of lora_target_modules.", extension=True)
    lora_alpha: float = _f(32.0, "LoRA scaling numerator (--lora-alpha): the adapter output is scaled by lora_alpha / "
                           "lora_r.", extension=True)
    lora_dropout: float = _f(0.0, "Dropout on the LoRA adapter input (--lora-dropout); 0 with tp_size > 1 (each "
                                  "tensor-parallel rank would draw its own masks).", extension=True)
    lora_target_modules: List[str] = _f([], "Modules that get LoRA adapters (--lora-target-modules): Megatron names "
                                        "linear_qkv (q/k/v_proj), linear_proj (o_proj), linear_fc1 (gate/up_proj), "
                                        "linear_fc2 (down_proj), or Hugging Face module names. Needed when lora_r > 0. "
                                        "With tp_size > 1 the adapters split with their base linear, as in Megatron.",
                                        extension=True)
    lora_merge_on_export: bool = _f(False, "At the Hugging Face export of a LoRA run, also write the base weights with "
                                    "the adapters merged in (<output_dir>/hf_model/) beside the adapter "
                                    "(<output_dir>/hf_adapter/).", extension=True)
    fp8_format: Optional[Literal["hybrid", "e4m3"]] = _f(None, "Float8 training (--fp8-format) with torchao's float8 "
                                                         "recipes: hybrid = E4M3 forward, E5M2 gradients; e4m3 = E4M3 "
                                                         "everywhere. Needs an NVIDIA GPU with FP8 (compute capability "
                                                         "8.9+); elsewhere the run refuses at start. None trains "
                                                         "without float8.", extension=True)
    fp8_recipe: Literal["delayed", "tensorwise", "blockwise"] = _f(
        "delayed", "Float8 scaling (--fp8-recipe): tensorwise and delayed run torchao's dynamic tensorwise scaling "
        "(torchao has no delayed scaling), blockwise runs torchao's rowwise scaling. --fp8-recipe mxfp8 becomes "
        "quant_recipe mxfp8.", extension=True)
    fp8_amax_history_len: int = _f(1, "Amax history of delayed scaling (--fp8-amax-history-len); kept for the record, "
                                   "torchao's dynamic scaling uses the current amax.", extension=True)
    fp8_amax_compute_algo: Literal["most_recent", "max"] = _f("most_recent", "Amax reduction of delayed scaling "
                                                              "(--fp8-amax-compute-algo); kept for the record, "
                                                              "torchao's dynamic scaling uses the current amax.",
                                                              extension=True)
    fp8_param_gather: bool = _f(False, "FSDP all-gathers float8 weights (--fp8-param-gather; torchao "
                                "enable_fsdp_float8_all_gather, tensorwise scaling only).", extension=True)
    moe_seq_aux_loss_coeff: float = _f(
        0.0, "Megatron's sequence-level load-balancing loss (--moe-router-load-balancing-type seq_aux_loss with its "
        "--moe-aux-loss-coeff, MindSpeed --seq-aux): coeff · E · Σ_e P_e · f_e per sample, averaged over the samples "
        "and summed over the MoE layers. Needs a model_id with experts.", extension=True)
    moe_device_level_aux_loss_coeff: float = _f(
        0.0, "DeepSeek-V2's device-level balance loss (MindSpeed --moe-device-level-aux-loss-coeff): coeff · "
        "Σ_g f'_g · P'_g over the router's n_group expert groups, f'_g the mean load of the group's experts, P'_g the "
        "sum of their mean scores. Needs a model_id with experts and expert groups (n_group).", extension=True)
    moe_comm_aux_loss_coeff: float = _f(
        0.0, "DeepSeek-V2's communication balance loss (MindSpeed --moe-comm-aux-loss-coeff): coeff · "
        "Σ_g f''_g · P'_g, f''_g the share of tokens sent to group g over topk_group / n_group. Needs a model_id "
        "with experts and expert groups (n_group).", extension=True)
    moe_balance_per_sample: bool = _f(
        False, "The device- and communication-level balance losses per sample, averaged over the samples (MindSpeed "
        "--seq-aux), instead of over all tokens of the micro-batch.", extension=True)
    moe_z_loss_coeff: float = _f(0.0, "Router z-loss (--moe-z-loss-coeff): coeff · mean(logsumexp(router logits)²) per "
                                 "MoE layer, summed over the layers. Needs a model_id with experts.", extension=True)
    moe_router_bias_update_rate: float = _f(
        0.0, "Aux-loss-free balancing (--moe-router-enable-expert-bias with --moe-router-bias-update-rate): after "
        "every step each MoE layer's expert bias (e_score_correction_bias) moves by this rate towards the experts that "
        "got fewer tokens than the mean, as Megatron updates it. 0 leaves the bias as loaded. Needs model_id "
        "deepseek_v3.", extension=True)
    moe_router_force_load_balancing: bool = _f(
        False, "A benchmarking aid (--moe-router-force-load-balancing): every MoE router's gate logits are replaced "
        "by random standard-normal values (gradient passed straight through), so tokens spread near-uniformly over "
        "the experts; training quality is meaningless. Needs a model_id with experts.", extension=True)
    moe_expert_capacity_factor: Optional[float] = _f(
        None, "Megatron's expert capacity (--moe-expert-capacity-factor): each expert takes at most "
        "ceil(tokens · top-k / experts · factor) of the tokens its router sees on a rank; the other token-expert "
        "pairs are dropped (their weight becomes 0), as megatron-core drops them. None routes every token "
        "(dropless). Needs a model_id with experts.", extension=True)
    moe_token_drop_policy: Literal["probs", "position"] = _f(
        "probs", "Which pairs an expert over capacity drops (--moe-token-drop-policy): those with the smallest "
        "routing weights (probs) or the latest tokens (position).", extension=True)
    dsa_indexer_loss_coeff: float = _f(
        0.0, "DeepSeek Sparse Attention's indexer loss (MindSpeed --indexer-loss-coeff): each attention layer adds "
        "coeff · KL(main attention over the selected keys ‖ softmax of the indexer's scores), averaged over the "
        "queries, and only this loss trains the indexer. Needs model_id deepseek_v32.", extension=True)
    mtp_num_layers: int = _f(0, "Multi-token prediction layers (--mtp-num-layers): Megatron's MTP modules trained "
                             "beside the model (the k-th predicts the token k+1 ahead), kept and exported as "
                             "model.layers.<num_hidden_layers + k> in DeepSeek-V3's Hugging Face layout.",
                             extension=True)
    mtp_loss_scaling_factor: float = _f(0.1, "Weight of the MTP loss (--mtp-loss-scaling-factor): the mean of the MTP "
                                        "depths' losses times this factor is added to the language-model loss.",
                                        extension=True)


@dataclass
class DataArguments:
    template: Optional[str] = _f(None, "Prompt template name.")
    dataset: Optional[Union[Dict[str, Any], str]] = _f(None, "Training data: fine-tuning names/inline dict, or for "
                                                       "pretraining the --data-path list ('0.3 prefA 0.7 prefB' or "
                                                       "prefixes alone) or a raw file.")
    eval_dataset: Optional[Union[Dict[str, Any], str]] = _f(None, "Evaluation data, same forms as dataset. Excludes "
                                                            "val_size.")
    dataset_dir: str = _f("./configs/fsdp2/data", "Directory holding dataset_info.json.")
    cutoff_len: int = _f(2048, "Sequence length after tokenisation (Megatron --seq-length).")
    train_on_prompt: bool = _f(False, "Train on prompt tokens too. Excludes mask_history.")
    mask_history: bool = _f(False, "Train only on the last turn. Excludes train_on_prompt.")
    streaming: bool = _f(False, "Stream the dataset. Excludes max_samples; needs an integer val_size.")
    buffer_size: int = _f(16384, "Shuffle buffer size when streaming.")
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = _f(
        "concat", "How several datasets are mixed.")
    interleave_probs: Optional[str] = _f(None, "Comma-separated sampling probabilities for interleave strategies.")
    overwrite_cache: bool = _f(False, "Overwrite the cached preprocessed dataset.")
    preprocessing_batch_size: int = _f(1000, "Samples per preprocessing batch.")
    preprocessing_num_workers: Optional[int] = _f(None, "Preprocessing processes (Megatron --workers).")
    max_samples: Optional[int] = _f(None, "Truncate each dataset to this many samples (debugging). Excludes streaming.")
    eval_num_beams: Optional[int] = _f(None, "Beams for model.generate during evaluation.")
    ignore_pad_token_for_loss: bool = _f(True, "Ignore padding labels in the loss.")
    val_size: float = _f(0.0, "Validation size: an integer count or a fraction in (0, 1). Excludes eval_dataset.")
    eval_on_each_dataset: bool = _f(False, "Evaluate each dataset separately.")
    packing: bool = _f(False, "Pack several short sequences into one (Megatron --pack).")
    neat_packing: bool = _f(False, "Pack without cross-attention between samples; turns packing on.")
    tool_format: Optional[str] = _f(None, "Tool-call format for function-calling data.")
    default_system: Optional[str] = _f(None, "Overrides the template's default system prompt.")
    enable_thinking: Optional[bool] = _f(True, "Thinking mode for reasoning templates; None keeps the data's own cot "
                                         "tags.")
    tokenized_path: Optional[str] = _f(None, "Save the tokenised dataset here, or load it when it exists.")
    data_shared_file_system: bool = _f(False, "Datasets live on a shared file system (tokenise once across nodes).")
    data_manager_type: Literal["lf", "mg"] = _f("lf", "lf: fine-tuning data; mg: Megatron pretraining data.")
    split: str = _f("100,0,0", "Train/valid/test split weights, comma-separated (Megatron --split).")
    create_attention_mask_in_dataloader: Optional[bool] = _f(False, "Build a dense attention mask in the data loader.")
    no_shared_storage: Optional[bool] = _f(False, "Nodes share no storage: build data caches once per node.")
    dataloader_type: Literal["single", "cyclic"] = _f("single", "Data loader type; `single` reads in order, `cyclic` "
                                                      "reads epochs in a random order seeded by the epoch (Megatron "
                                                      "--dataloader-type cyclic).")
    # --- extensions carrying Megatron semantics ---
    data_sharding: bool = _f(True, "With dataloader_type cyclic: each data-parallel rank shuffles its own contiguous "
                             "share of the samples (Megatron's default); false shuffles them all and deals them out "
                             "(--no-data-sharding).", extension=True)
    train_data_path: Optional[str] = _f(None, "Training split's own --data-path list (--train-data-path).",
                                        extension=True)
    valid_data_path: Optional[str] = _f(None, "Validation split's own --data-path list (--valid-data-path).",
                                        extension=True)
    test_data_path: Optional[str] = _f(None, "Test split's own --data-path list (--test-data-path).", extension=True)
    train_weighted_split_paths: Optional[str] = _f(
        None, "bigscience's / bigcode's weighted dataset group for training, instead of dataset/split: "
        "'NAME: WEIGHT START:END PATH, WEIGHT START:END PATH, ...', each PATH a .bin/.idx prefix restricted to its "
        "documents [round(START·N), round(END·N)) of N, blended by WEIGHT (--train-weighted-split-paths, or the "
        "file of --train-weighted-split-paths-path).", extension=True)
    valid_weighted_split_paths: Optional[List[str]] = _f(
        None, "Validation groups in the same form as train_weighted_split_paths, each evaluated on its own and "
        "logged under its NAME (--valid-weighted-split-paths, or the file of --valid-weighted-split-paths-path).",
        extension=True)
    test_weighted_split_paths: Optional[List[str]] = _f(
        None, "Test groups in the same form, each evaluated on its own at the end under its NAME "
        "(--test-weighted-split-paths, or the file of --test-weighted-split-paths-path).", extension=True)
    train_weighted_split_paths_path: Optional[str] = _f(
        None, "A file holding the training group instead (--train-weighted-split-paths-path: one line, the group in "
        "double quotes), read when the data is built; the translation reads it itself when the file is there.",
        extension=True)
    valid_weighted_split_paths_path: Optional[str] = _f(
        None, "A file holding the validation groups (--valid-weighted-split-paths-path), read when the data is built.",
        extension=True)
    test_weighted_split_paths_path: Optional[str] = _f(
        None, "A file holding the test groups (--test-weighted-split-paths-path), read when the data is built.",
        extension=True)
    mock_data: bool = _f(False, "Synthetic data instead of files (--mock-data).", extension=True)
    data_cache_path: Optional[str] = _f(None, "Where index caches are written (--data-cache-path).", extension=True)
    reset_position_ids: bool = _f(False, "Restart position ids after each end-of-document token.", extension=True)
    reset_attention_mask: bool = _f(False, "No attention across documents inside a sample (the documents reach "
                                    "attention as restarting positions with reset_position_ids, else as the data "
                                    "loader's mask).", extension=True)
    eod_mask_loss: bool = _f(False, "Mask the loss on end-of-document tokens.", extension=True)
    skip_invalid_lines: bool = _f(False, "Fine-tuning data (lf): skip the lines of a JSON-lines file that are not "
                                  "valid JSON, counting them and naming file and line numbers in one warning. False "
                                  "stops at the first such line, naming file and line.", extension=True)
    is_instruction_dataset: bool = _f(False, "With data_manager_type mg: the --data-path prefixes are MindSpeed-LLM "
                                      "instruction datasets "
                                      "(<prefix>_packed_{input_ids,labels,attention_mask}_document.bin/.idx, "
                                      "--is-instruction-dataset), trained with their prompt tokens masked.",
                                      extension=True)
    padded_samples: bool = _f(False, "With is_instruction_dataset: each epoch of the training order is padded to a "
                              "whole number of global batches with the samples from index 0 on, as MindSpeed-LLM's "
                              "--padded-samples does (no partial last batch per epoch).", extension=True)
    fim_data: bool = _f(False, "With data_manager_type mg: turn pretraining samples into fill-in-the-middle (FIM) "
                        "samples as Megatron-LM's GPTFIMDataset does (--fim-data; bigcode's Megatron-LM turned it on "
                        "with --fim-rate alone, which therefore sets this too).", extension=True)
    fim_rate: float = _f(0.5, "With fim_data: probability that a document of a sample becomes a FIM document "
                         "(--fim-rate); 0 leaves the samples as they are.", extension=True)
    fim_spm_rate: float = _f(0.5, "With fim_data: probability that a FIM document takes the SPM layout (suffix, "
                             "prefix, middle) rather than PSM (prefix, suffix, middle) (--fim-spm-rate).",
                             extension=True)
    fim_split_sample: Optional[str] = _f(None, "With fim_data: a token (e.g. a file separator) at which each "
                                         "document is further cut into fragments, each transformed at "
                                         "fim_fragment_rate (--fim-split-sample).", extension=True)
    fim_fragment_rate: Optional[float] = _f(None, "With fim_split_sample: probability that a fragment becomes a FIM "
                                            "fragment (--fim-fragment-rate).", extension=True)
    fim_no_prefix: Optional[str] = _f(None, "With fim_data: a piece whose text starts with this string is left as "
                                      "it is (--fim-no-prefix).", extension=True)
    fim_prefix_token: str = _f("<fim_prefix>", "FIM prefix token, a vocabulary entry (--fim-prefix-token).",
                               extension=True)
    fim_middle_token: str = _f("<fim_middle>", "FIM middle token (--fim-middle-token).", extension=True)
    fim_suffix_token: str = _f("<fim_suffix>", "FIM suffix token (--fim-suffix-token).", extension=True)
    fim_pad_token: str = _f("<fim_pad>", "Pads a FIM sample that came out shorter than the original "
                            "(--fim-pad-token).", extension=True)
    fim_eod_token: str = _f("<|endoftext|>", "The token at which FIM cuts samples into documents (--fim-eod-token).",
                            extension=True)


@dataclass
class ParallelArguments:
    tp_size: int = _f(1, "Tensor-parallel size.")
    fsdp_size: Optional[int] = _f(None, "FSDP shard-group size. Unset (our documented default) shards over every "
                                  "data-parallel rank, as Megatron's distributed optimizer does; an explicit value is "
                                  "honoured, with replicate groups (HSDP) over the rest.")
    recompute: bool = _f(False, "Activation recompute (Megatron --recompute-granularity/--recompute-method).")
    ep_size: int = _f(1, "Expert-parallel size.")
    ep_fsdp_size: int = _f(1, "FSDP size inside the expert-parallel group.")
    cp_size: int = _f(1, "Context-parallel size.")
    cp_type: Literal["ulysses"] = _f("ulysses", "Context-parallel algorithm.")
    fsdp_modules: List[str] = _f(["model.layers.{*}", "model.embed_tokens", "lm_head"], "Modules wrapped by "
                                 "fully_shard; must not be empty.")
    ignored_modules: Optional[List[str]] = _f(None, "Modules left out of FSDP.")
    reshard_after_forward: bool = _f(True, "Reshard parameters after forward.")
    data_parallel: Literal["auto", "fsdp", "replicate"] = _f(
        "auto", "How plain data parallelism holds the weights: fsdp shards them (FSDP2); replicate keeps them whole "
        "on every rank with one bucketed gradient all-reduce overlapping backward (as PyTorch DDP; fp32 parameters "
        "and reduction, no tp/cp/ep, fsdp_size and ignored_modules unset); auto replicates on CPU where replicate "
        "applies and the model has at most 100M parameters, and shards otherwise. Same losses either way (fp32 "
        "rounding).", extension=True)
    shard_placement_fn: Optional[str] = _f(None, "Custom shard placement function.")
    tp_colwise: List[str] = _f(["*.q_proj", "*.k_proj", "*.v_proj", "*.gate_proj", "*.up_proj"], "Column-parallel "
                               "module patterns.")
    tp_rowwise: List[str] = _f(["*.o_proj", "*.down_proj"], "Row-parallel module patterns.")
    sequence_parallel: bool = _f(True, "With tp_size > 1, keep norms and the residual stream split over the "
                                 "sequence between tensor-parallel blocks (Megatron --sequence-parallel, on by default "
                                 "as Megatron recommends); false keeps them whole on every tensor-parallel rank. The "
                                 "loss is the same either way.", extension=True)
    ep_modules: List[str] = _f(["model.layers.{*}.mlp.experts"], "Expert-parallel module patterns.")
    ep_fsdp_modules: List[str] = _f(["model.layers.{*}.mlp.experts"], "FSDP module patterns inside the expert group.")
    ep_dispatcher: Literal["eager", "fused", "mc2"] = _f("eager", "MoE token dispatcher.")
    recompute_modules: List[str] = _f(["model.layers.{*}"], "Modules whose activations are recomputed when recompute "
                                      "is on.")
    param_dtype: DTYPE = _f("bf16", "Parameter dtype for compute (Megatron --bf16/--fp16).")
    reduce_dtype: DTYPE = _f("fp32", "Gradient reduction dtype (Megatron --grad-reduce-in-bf16 gives bf16).")
    num_to_forward_prefetch: int = _f(1, "Modules prefetched in forward.")
    num_to_backward_prefetch: int = _f(1, "Modules prefetched in backward.")
    distributed_timeout_minutes: Optional[float] = _f(None, "Timeout of collectives in the default process group, in "
                                                      "minutes (Megatron --distributed-timeout-minutes, whose default "
                                                      "is 10); unset: PyTorch's default for the backend.",
                                                      extension=True)


LR_STYLES = Literal["cosine", "linear", "constant", "inverse_square_root", "wsd"]


@dataclass
class TrainingArguments:
    output_dir: Optional[str] = _f(None, "Output directory (checkpoints, logs, exports). Required.")
    optimizer: Literal["adamw", "sgd"] = _f("adamw", "Optimizer: adamw (Megatron --optimizer adam) or sgd with "
                                            "momentum (--optimizer sgd).")
    lr: float = _f(1e-5, "Peak learning rate.")
    weight_decay: float = _f(0.01, "Weight decay.")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.95, "AdamW beta2.")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon.")
    sgd_momentum: float = _f(0.9, "Momentum of the sgd optimizer (Megatron --sgd-momentum).", extension=True)
    max_grad_norm: float = _f(1.0, "Global gradient-norm clip; 0 disables clipping.")
    lr_scheduler_type: LR_STYLES = _f("cosine", "LR decay style. The table's cosine/linear/constant, extended with "
                                      "Megatron's inverse_square_root and wsd.")
    warmup_ratio: float = _f(0.03, "Linear warmup as a fraction of the decay steps (Megatron --lr-warmup-fraction).")
    min_lr: float = _f(1e-6, "Minimum learning rate.")
    num_train_epochs: float = _f(3.0, "Training epochs; ignored when max_steps > 0.")
    max_steps: int = _f(-1, "Training steps (Megatron --train-iters); > 0 overrides num_train_epochs.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches accumulated per optimizer step.")
    disable_shuffling: bool = _f(False, "No shuffling of the training set (Megatron --no-shuffle).")
    seed: int = _f(42, "Random seed.")
    deterministic: bool = _f(False, "Bitwise-reproducible runs (Megatron --deterministic-mode, MindSpeed "
                                    "--npu-deterministic): deterministic kernels only (torch.use_deterministic_"
                                    "algorithms), a fixed collective algorithm and deterministic Ascend collectives; "
                                    "slower.", extension=True)
    save_steps: int = _f(500, "Save every N steps; 0 saves only at the end.")
    save_total_limit: Optional[int] = _f(3, "Keep at most N checkpoints (None keeps all).")
    save_retain_interval: Optional[int] = _f(None, "After each save, delete the previous checkpoint unless its step "
                                             "is a multiple of N (Megatron --save-retain-interval; a multiple of "
                                             "save_steps). None keeps them all.")
    resume_from_checkpoint: Optional[str] = _f(None, "Checkpoint to resume from; `latest` means the newest complete "
                                               "one in output_dir.")
    logging_steps: int = _f(1, "Log every N steps.")
    stage: Literal["pt", "sft"] = _f("sft", "Training stage: pretraining or supervised fine-tuning.")
    calculate_per_token_loss: bool = _f(False, "Scale the loss by the global count of non-padding tokens.")
    chunk_loss_size: Optional[int] = _f(None, "Compute the loss in sequence chunks of this length to save memory.")
    z_loss_coeff: float = _f(0.0, "PaLM-style z-loss on the output logits: every trained token's loss gains "
                                  "coeff × logsumexp(logits)²; 0 turns it off (forks' --use-z-loss: 1e-4).",
                             extension=True)
    dataloader_num_workers: int = _f(0, "Data-loader worker processes.")
    dataloader_prefetch_factor: Optional[int] = _f(None, "Batches prefetched per worker.")
    dataloader_pin_memory: bool = _f(True, "Pin data-loader memory.")
    dataloader_persistent_workers: bool = _f(False, "Keep data-loader workers alive.")
    dataloader_drop_last: bool = _f(False, "Drop the last incomplete batch.")
    per_device_train_batch_size: int = _f(8, "Micro-batch size per device (Megatron --micro-batch-size).")
    gdn_chunk_size: int = _f(64, "Gated DeltaNet chunk size.")
    save_only_model: bool = _f(False, "Save model weights only (no optimizer, scheduler or RNG state).")
    save_async: bool = _f(False, "Save checkpoints asynchronously.")
    save_epochs: int = _f(1, "Save every N epochs.")
    save_hf_weights: bool = _f(True, "Export Hugging Face weights at the end of training.")
    # --- extensions carrying Megatron semantics ---
    global_batch_size: Optional[int] = _f(None, "Megatron's global batch; when set, gradient_accumulation_steps is "
                                          "derived from it and the data-parallel size at run time.", extension=True)
    train_samples: Optional[int] = _f(
        None, "Length of the run in samples (--train-samples): max_steps is derived from it (batch-size ramp-up "
              "included, as Megatron's update_train_iters), and the LR decay and weight-decay increment default to "
              "it, in samples.", extension=True)
    train_tokens: Optional[int] = _f(
        None, "Megatron-DeepSpeed's --train-tokens: the run also ends before the first iteration that would start "
              "with at least this many tokens consumed (consumed samples × cutoff_len), whichever of it and "
              "max_steps comes first; schedules and data keep the run's length (max_steps or train_samples).",
        extension=True)
    rampup_batch_size: Optional[List[int]] = _f(
        None, "Batch-size ramp-up [start, increment, samples] (--rampup-batch-size): the global batch starts at "
              "`start` and grows by `increment` over `samples` consumed samples up to global_batch_size; each "
              "iteration takes the current batch's micro-batches and advances the LR schedule by it (megatron-core "
              "0.16's RampupBatchsizeNumMicroBatchesCalculator).", extension=True)
    step_batch_size_schedule: Optional[str] = _f(
        None, "Step-wise global batch (--step-batch-size-schedule), 'THRESHOLD:BATCH ...' with K/M/B/T suffixes, "
              "e.g. '0:16 2.4B:320 12B:1536': from THRESHOLD tokens consumed (divided by cutoff_len into samples, "
              "as Megatron does with --seq-length) the global batch is BATCH. global_batch_size stays the batch of "
              "evaluation and of iteration counts in the LR schedule.", extension=True)
    decoupled_lr: Optional[float] = _f(
        None, "Peak learning rate of the input embedding and output layer (--decoupled-lr; tied embeddings: the "
              "shared weight), on the same warmup/decay shape as lr; None: one learning rate for all.",
        extension=True)
    decoupled_min_lr: Optional[float] = _f(
        None, "Minimum learning rate of the embedding and output layer with decoupled_lr (--decoupled-min-lr); "
              "None: min_lr.", extension=True)
    lr_warmup_steps: Optional[float] = _f(None, "Warmup in steps (--lr-warmup-iters, or samples / global batch, which "
                                          "may be fractional so the schedule equals Megatron's sample-based one); wins "
                                          "over warmup_ratio.", extension=True)
    lr_decay_steps: Optional[float] = _f(None, "Steps over which the LR decays (--lr-decay-iters, or samples / global "
                                         "batch); default max_steps (train_samples when the run is given in samples). "
                                         "Warmup from warmup_ratio is a fraction of this.",
                                         extension=True)
    lr_warmup_init: float = _f(0.0, "Learning rate at the start of warmup.", extension=True)
    lr_wsd_decay_style: Literal["exponential", "linear", "cosine", "minus_sqrt"] = _f(
        "exponential", "Decay shape of the WSD schedule's final phase.", extension=True)
    lr_wsd_decay_steps: Optional[float] = _f(None, "Length of the WSD decay phase in steps.", extension=True)
    weight_decay_incr_style: Literal["constant", "linear", "cosine"] = _f(
        "constant", "How weight decay moves from start_weight_decay to end_weight_decay.", extension=True)
    start_weight_decay: Optional[float] = _f(None, "Weight decay at step 0 (non-constant styles).", extension=True)
    end_weight_decay: Optional[float] = _f(None, "Weight decay at the end (non-constant styles).", extension=True)
    eval_interval: Optional[int] = _f(None, "Evaluate on the valid split every N steps; None disables periodic "
                                      "evaluation.", extension=True)
    eval_iters: int = _f(100, "Batches per evaluation (and for the final test split).", extension=True)
    exit_interval: Optional[int] = _f(None, "Save and exit after this iteration.", extension=True)
    exit_duration_in_mins: Optional[float] = _f(None, "Save and exit after this many minutes.", extension=True)
    exit_signal_handler: bool = _f(False, "On SIGTERM/SIGINT finish the iteration, save and exit 0.", extension=True)
    load_optim: bool = _f(True, "Restore optimizer and scheduler state on resume (--no-load-optim turns off).",
                          extension=True)
    load_rng: bool = _f(True, "Restore RNG state on resume (--no-load-rng turns off).", extension=True)
    finetune: bool = _f(False, "Load weights only and reset counters (--finetune).", extension=True)
    trust_megatron_pickle: bool = _f(False, "Unpickle a Megatron checkpoint's files fully, types outside the "
                                     "allow-list of what Megatron stores included (runs code from the files).",
                                     extension=True)
    save_optim: bool = _f(True, "Save optimizer and scheduler state (--no-save-optim turns off).", extension=True)
    save_rng: bool = _f(True, "Save RNG state (--no-save-rng turns off).", extension=True)
    check_for_nan_in_loss_and_grad: bool = _f(True, "Check loss and gradients for NaN/Inf every iteration; such "
                                              "iterations are skipped (no update).", extension=True)
    max_skipped_iterations: int = _f(10, "With the NaN/Inf check, the run stops once more iterations than this were "
                                     "skipped (counted over the whole run, resumes included); fp16 overflows that "
                                     "the dynamic loss scale backs off from do not count.", extension=True)
    loss_scale: Optional[float] = _f(None, "Static loss scale (Megatron --loss-scale): the loss is multiplied by it "
                                     "before backward and the gradients divided by it; overflowing iterations are "
                                     "skipped. Unset: fp16 scales dynamically, bf16/fp32 not at all.", extension=True)
    initial_loss_scale: float = _f(2.0 ** 32, "fp16 dynamic loss scaling: the starting scale (Megatron "
                                   "--initial-loss-scale).", extension=True)
    min_loss_scale: float = _f(1.0, "fp16 dynamic loss scaling: the scale never backs off below this (Megatron "
                               "--min-loss-scale).", extension=True)
    loss_scale_window: int = _f(1000, "fp16 dynamic loss scaling: iterations in a row without overflow before the "
                                "scale doubles (Megatron --loss-scale-window).", extension=True)
    hysteresis: int = _f(2, "fp16 dynamic loss scaling: overflows tolerated before the scale halves (Megatron "
                         "--hysteresis).", extension=True)
    tensorboard_dir: Optional[str] = _f(None, "Write TensorBoard scalars here.", extension=True)
    wandb_project: Optional[str] = _f(None, "Weights & Biases project; unset disables wandb.", extension=True)
    wandb_exp_name: Optional[str] = _f(None, "Weights & Biases run name.", extension=True)
    wandb_save_dir: Optional[str] = _f(None, "Weights & Biases local directory.", extension=True)
    wandb_entity: Optional[str] = _f(None, "Weights & Biases entity (team or user) the run belongs to.", extension=True)
    wandb_id: Optional[str] = _f(None, "Weights & Biases run id: a run with this id is resumed rather than started "
                                       "anew.", extension=True)
    wandb_group: Optional[str] = _f(None, "Weights & Biases group the run is shown in (runs of one experiment).",
                                    extension=True)


@dataclass
class OptimizationArguments:
    """Fused-operator switches (the reference's 融合算子 group)."""
    use_fused_rmsnorm: bool = _f(False, "Fused RMSNorm kernel.")
    moe_grouped_gemm: bool = _f(False, "Grouped GEMM for MoE experts.")
    use_fused_rotary_pos_emb: bool = _f(False, "Fused rotary position embedding kernel.")
    use_flash_attn: bool = _f(False, "Flash attention kernel.")
    use_triton_gdn: bool = _f(False, "Triton kernels for Gated DeltaNet.")
    compile_blocks: bool = _f(False, "torch.compile each transformer block (before recompute and FSDP), as "
                              "torchtitan does; same losses as eager.", extension=True)


@dataclass
class ProfilingArguments:
    profile: bool = _f(False, "Collect a profile.")
    profile_step_start: int = _f(0, "First profiled step (inclusive); >= 0.")
    profile_step_end: int = _f(-1, "Step where profiling stops (exclusive); -1 runs to the end.")
    profile_ranks: List[int] = _f([-1], "Ranks to profile; -1 means all.")
    profile_level: Literal["level_none", "level0", "level1", "level2"] = _f("level0", "Profile detail level.")
    profile_export_type: Literal["text", "db"] = _f("text", "Profile export format.")
    profile_data_simplification: bool = _f(False, "Simplified profile data.")
    profile_with_cpu: bool = _f(False, "Record CPU activity.")
    profile_with_stack: bool = _f(False, "Record call stacks.")
    profile_with_memory: bool = _f(False, "Record memory.")
    profile_record_shapes: bool = _f(False, "Record tensor shapes.")
    profile_save_path: str = _f("./profile", "Where traces are written.")


# YAML section name -> dataclass. A field's home section is where it is written;
# on reading, a field may sit under any section, or flat.
SECTIONS = {
    "model": ModelArguments,
    "data": DataArguments,
    "parallel": ParallelArguments,
    "training": TrainingArguments,
    "optimization": OptimizationArguments,
    "profiling": ProfilingArguments,
}


@dataclass
class TrainConfig:
    model: ModelArguments = field(default_factory=ModelArguments)
    data: DataArguments = field(default_factory=DataArguments)
    parallel: ParallelArguments = field(default_factory=ParallelArguments)
    training: TrainingArguments = field(default_factory=TrainingArguments)
    optimization: OptimizationArguments = field(default_factory=OptimizationArguments)
    profiling: ProfilingArguments = field(default_factory=ProfilingArguments)
