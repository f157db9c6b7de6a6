"""Factory functions for tests: people, repositories and real safetensors files."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.numpy import save

from hub.accounts.services import token_create, user_create


def make_user(username: str, password: str = "correct-horse-battery") -> User:
    return user_create(username=username, password=password)


def make_token(user: User, scope: str = "write") -> str:
    return token_create(user=user, name=f"{user.username}-{scope}", scope=scope).secret


def safetensors_bytes(tensors: dict[str, tuple[int, ...]], *, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return save(
        {name: rng.standard_normal(shape).astype(np.float32) for name, shape in tensors.items()}
    )


#: A tiny "base model": two linear layers a LoRA can target.
TINY_BASE = {
    "model.layers.0.self_attn.q_proj.weight": (16, 16),
    "model.layers.0.self_attn.v_proj.weight": (16, 16),
    "model.layers.0.mlp.up_proj.weight": (32, 16),
}


def base_model_files(seed: int = 0) -> dict[str, bytes]:
    return {
        "config.json": json.dumps(
            {"architectures": ["TinyForTest"], "model_type": "tiny"}
        ).encode(),
        "model.safetensors": safetensors_bytes(TINY_BASE, seed=seed),
    }


def adapter_files(*, rank: int = 4, seed: int = 1, base: str | None = None) -> dict[str, bytes]:
    tensors = {}
    for module in ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"):
        tensors[f"base_model.model.{module}.lora_A.weight"] = (rank, 16)
        tensors[f"base_model.model.{module}.lora_B.weight"] = (16, rank)
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": base,
    }
    return {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.safetensors": safetensors_bytes(tensors, seed=seed),
    }


def multipart(files: dict[str, bytes], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Django test-client multipart payload: one part per file, named by its path."""
    data: dict[str, Any] = {
        path: SimpleUploadedFile(path.rsplit("/", 1)[-1], content)
        for path, content in files.items()
    }
    if metadata is not None:
        data["metadata"] = json.dumps(metadata)
    return data


def requests_files(files: dict[str, bytes]) -> list[tuple[str, tuple[str, io.BytesIO]]]:
    """The same payload for the ``requests`` library."""
    return [
        (path, (path.rsplit("/", 1)[-1], io.BytesIO(content))) for path, content in files.items()
    ]
