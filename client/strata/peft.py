"""``load_peft``: a base model with a hub adapter stack applied, as a PEFT model.

Needs the ``peft`` extra (``pip install 'strata-client[peft]'``): peft, torch and
transformers are imported only when this runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strata.errors import StrataError, UsageError

if TYPE_CHECKING:
    from strata.client import Client


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise StrataError(
            f"strata.load_peft needs {module}: pip install 'strata-client[peft]'",
            code="missing_dependency",
        ) from exc


def load_base_model(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A transformers model from a local folder, using the class its config names."""
    transformers = _require("transformers")
    config = transformers.AutoConfig.from_pretrained(str(path))
    cls = None
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            break
    if cls is None:
        cls = transformers.AutoModel
    return cls.from_pretrained(str(path), **kwargs)


def apply_stack(model: Any, adapter_dirs: list[Path], *, is_trainable: bool = False) -> Any:
    """Apply adapters in order: each parent is merged in, the last stays a PeftModel."""
    if not adapter_dirs:
        raise UsageError("No adapter to apply.", code="not_a_stack")
    peft = _require("peft")
    for parent in adapter_dirs[:-1]:
        model = peft.PeftModel.from_pretrained(model, str(parent)).merge_and_unload()
    return peft.PeftModel.from_pretrained(model, str(adapter_dirs[-1]), is_trainable=is_trainable)


def load_peft(
    base_model: Any,
    ref: str,
    *,
    client: Client | None = None,
    is_trainable: bool = False,
    **model_kwargs: Any,
) -> Any:
    """Load ``ref``'s adapter stack onto ``base_model`` and return the PEFT model.

    ``base_model`` is a loaded transformers model (modified in place, as with
    ``PeftModel.from_pretrained``), a local model folder, a hub base model reference
    (``namespace/name[@rev]``), or None for the stack's own base from the hub.
    Parents are merged into the base in order; the top adapter stays a ``PeftModel``.
    ``model_kwargs`` go to ``from_pretrained`` when the base is loaded here.
    """
    from strata.client import Client

    client = client or Client()
    base, adapters = client.stack_folders(ref)
    if base_model is None:
        if base is None:
            raise UsageError(f"{ref} has no base model visible on the hub.", code="no_base")
        base_model = client.snapshot(f"{base.repo}@{base.commit_id}")
    if isinstance(base_model, (str, os.PathLike)):
        text = os.fspath(base_model)
        if not Path(text).exists() and "/" in text:
            text = str(client.snapshot(text))
        base_model = load_base_model(text, **model_kwargs)
    return apply_stack(base_model, adapters, is_trainable=is_trainable)
