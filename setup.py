"""Install the Megatron-compatible FSDP2 trainer: `pip install -e ".[test]"`."""
from setuptools import find_packages, setup

setup(
    name="megatron-fsdp2",
    version="0.1.0",
    description="Run Megatron-LM / MindSpeed-LLM launch scripts on a PyTorch-native FSDP2 engine",
    packages=find_packages(include=["megatron_compat*", "fsdp2_core*"]),
    package_data={"megatron_compat": ["data/*.tsv"], "fsdp2_core.data.megatron": ["*.c"]},
    license="Apache-2.0",
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6",
        "transformers>=4.50",
        "numpy",
        "datasets",
        "safetensors",
        "regex",
        "pyyaml",
        "tokenizers",
        "sentencepiece",
        "peft",
    ],
    extras_require={
        "test": ["pytest", "ruff", "megatron-core==0.16.1", "matplotlib", "torchao"],
        "npu": ["torch_npu"],
        "quant": ["torchao"],
        "plot": ["matplotlib"],
    },
)
