"""Validate an uploaded LoRA adapter: container, PEFT config, base compatibility, numbers.

Entry points: :func:`validate_adapter` (everything, including one streaming pass over the
tensor data) and :func:`check_header_compat` (headers and config only, milliseconds).

Contract: **bad input never raises.** Whatever the upload holds, the result is a
:class:`~workers.findings.Report` whose status is ``invalid`` and whose findings say why.
Exceptions are reserved for infrastructure: anything a reader raises other than
:class:`SafetensorsError` (an S3 timeout, a dropped connection) propagates unchanged so the
Celery task can retry it. A reader signals a file shorter than declared by raising
SafetensorsError("truncated"), which becomes a finding.

Readers are never called concurrently, but not always from the calling thread: the
numeric scan reads the next chunk on one helper thread while it computes on the current
one. Chunks are ``Limits.read_chunk_bytes`` (16 MiB) range reads in file order.

No Django, no Celery; torch is imported only by the numeric scan.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workers.findings import FindingCollector, ModuleStats, Report, Status
from workers.lora import AdapterConfigError, LoraConfig, parse_adapter_config, split_adapter_key
from workers.safetensors_io import RangeReader, SafetensorsError, read_header
from workers.validate_config import Limits, regex_problem
from workers.validate_structure import (
    VLLM_DEFAULT_MAX_LORA_RANK,
    VLLM_MAX_LORA_RANK,
    BaseIndex,
    StructureChecker,
    Upload,
)

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_KOHYA_PREFIXES = (
    "lora_unet_",
    "lora_te_",
    "lora_te1_",
    "lora_te2_",
    "lora_te3_",
    "lora_transformer_",
)
_KOHYA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".hada_w1_a", ".lokr_w1")
_DIFFUSERS_MARKERS = re.compile(r"\.lora\.(down|up)\.weight|\.lora_linear_layer\.|_lora\.down\.")
_DIFFUSERS_ROOTS = ("unet.", "text_encoder.", "text_encoder_2.", "prior.", "decoder.")


@dataclass(frozen=True, slots=True)
class WeightFile:
    """One safetensors file of the upload, read through ``read(offset, length)``."""

    path: str
    size: int
    read: RangeReader


def validate_adapter(
    *,
    config: bytes,
    weights: Sequence[WeightFile],
    base_manifest: Mapping[str, Mapping[str, Any]] | None,
    base_id: str | None,
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, safe as a default
) -> Report:
    """Validate an adapter fully, including one streaming pass over every tensor's data.

    ``base_manifest`` maps base tensor names to ``{"dtype", "shape"}`` (from headers only);
    None means the base is unknown and only the checks that need no base run. ``base_id``
    is the hub's id of the declared base; it goes into the normalized config.
    Never raises for bad input (see the module docstring for the exception contract).
    """
    return _validate(config, weights, base_manifest, base_id, limits, scan=True)


def check_header_compat(
    *,
    config: bytes,
    weights: Sequence[WeightFile],
    base_manifest: Mapping[str, Mapping[str, Any]] | None,
    base_id: str | None,
    limits: Limits = Limits(),  # noqa: B008
) -> Report:
    """Every check that needs only headers and the config: two range reads per file.

    ``valid`` here means no header-level error; the numbers have not been looked at
    (``facts["numeric_scan"]`` is False).
    """
    return _validate(config, weights, base_manifest, base_id, limits, scan=False)


def _validate(
    config: bytes,
    weights: Sequence[WeightFile],
    base_manifest: Mapping[str, Mapping[str, Any]] | None,
    base_id: str | None,
    limits: Limits,
    *,
    scan: bool,
) -> Report:
    f = FindingCollector(limits.max_findings_per_code)
    facts: dict[str, Any] = {"numeric_scan": False, "layout": None, "base_checked": False}
    upload = _read_containers(weights, limits, f, facts)
    cfg: LoraConfig | None = None
    normalized: dict[str, Any] | None = None
    stats: list[ModuleStats] = []
    if upload is not None and _detect_layout(upload, f, facts):
        try:
            cfg = parse_adapter_config(config)
        except AdapterConfigError as exc:
            f.error(exc.code, exc.message)
    if upload is not None and cfg is not None:
        normalized = _config_facts(cfg, base_id, f, facts)
        base = _base_index(base_manifest, f)
        facts["base_checked"] = base is not None
        checker = StructureChecker(cfg, upload, base, limits, f, facts)
        plans, saved_dtypes = checker.run()
        if scan and not f.has("truncated"):
            from workers.validate_numeric import scan_numbers  # torch only when scanning

            try:
                result = scan_numbers(
                    upload.files,
                    plans,
                    f,
                    saved_base_dtypes=saved_dtypes,
                    chunk_bytes=limits.read_chunk_bytes,
                    exact_chunk_elements=limits.exact_chunk_elements,
                    threads=limits.torch_threads,
                )
            except SafetensorsError as exc:
                f.error(exc.code, exc.message, tensor=exc.tensor)
            else:
                stats = result.module_stats
                facts.update(
                    numeric_scan=True,
                    scanned_bytes=result.scanned_bytes,
                    zero_modules=result.zero_modules,
                )
                if plans and result.zero_modules == len(plans):
                    f.warning(
                        "all_zero_adapter",
                        "Every LoRA update is exactly zero (lora_A or lora_B is all zeros), so "
                        "the adapter changes nothing. PEFT initializes lora_B to zero: was it "
                        "saved before training?",
                    )
    findings = f.result()
    status: Status = "invalid" if any(x.severity == "error" for x in findings) else "valid"
    return Report(status, findings, facts, stats, normalized)


def _read_containers(
    weights: Sequence[WeightFile], limits: Limits, f: FindingCollector, facts: dict[str, Any]
) -> Upload | None:
    """Parse every header strictly; None when nothing further can be checked."""
    facts.update(file_count=len(weights), total_bytes=sum(max(0, w.size) for w in weights))
    if not weights:
        f.error("no_weight_files", "The upload has no adapter_model.safetensors file.")
        return None
    if len(weights) > limits.max_files:
        f.error(
            "too_many_files",
            f"The upload has {len(weights)} weight files; the limit is {limits.max_files}.",
        )
        return None
    if facts["total_bytes"] > limits.max_total_bytes:
        f.error(
            "adapter_too_large",
            f"The weights are {facts['total_bytes']} bytes; the limit is {limits.max_total_bytes}.",
        )
        return None
    upload = Upload()
    ok = True
    for weight in weights:
        if weight.path.lower().endswith(_PICKLE_SUFFIXES):
            f.error(
                "pickle_weights_refused",
                f"{weight.path} is a pickle-based checkpoint; Strata never unpickles uploads. "
                "Save the adapter with safe_serialization=True (adapter_model.safetensors).",
            )
            ok = False
            continue
        try:
            header = read_header(
                weight.read,
                weight.size,
                max_header_bytes=limits.max_header_bytes,
                max_tensors=limits.max_tensors,
            )
        except SafetensorsError as exc:
            if _looks_pickled(weight):
                f.error(
                    "pickle_weights_refused",
                    f"{weight.path} holds a pickle (a torch.save checkpoint), not safetensors; "
                    "Strata never unpickles uploads. Save with safe_serialization=True.",
                )
            else:
                f.error(exc.code, f"{weight.path}: {exc.message}", tensor=exc.tensor)
            ok = False
            continue
        index = len(upload.files)
        upload.files.append((weight.read, header))
        for name in header.tensors:
            if name in upload.where:
                f.error(
                    "duplicate_tensor_key",
                    f"{name} appears in more than one weight file; loaders would keep only "
                    "one of them.",
                    tensor=name,
                )
                ok = False
            upload.where[name] = index
    if len(upload.where) > limits.max_tensors:
        f.error(
            "too_many_tensors",
            f"The upload holds {len(upload.where)} tensors; the limit is {limits.max_tensors}.",
        )
        ok = False
    if not ok:
        return None
    dtype_bytes: dict[str, int] = {}
    for _, header in upload.files:
        for info in header.tensors.values():
            dtype_bytes[info.dtype] = dtype_bytes.get(info.dtype, 0) + info.nbytes
    facts.update(
        tensor_count=len(upload.where),
        dtypes=sorted(dtype_bytes),
        dtype_bytes=dtype_bytes,
        tensor_bytes=sum(dtype_bytes.values()),
    )
    return upload


def _looks_pickled(weight: WeightFile) -> bool:
    """A zip (torch.save) or a raw pickle stream, read from the first bytes only."""
    if weight.size < 4:
        return False
    try:
        head = weight.read(0, 4)
    except SafetensorsError:
        return False
    return head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and 2 <= head[1] <= 5)


def _detect_layout(upload: Upload, f: FindingCollector, facts: dict[str, Any]) -> bool:
    """Name kohya and diffusers layouts instead of failing them tensor by tensor."""
    kohya = [
        n for n in upload.where if n.startswith(_KOHYA_PREFIXES) or n.endswith(_KOHYA_SUFFIXES)
    ]
    diffusers = [
        n
        for n in upload.where
        if _DIFFUSERS_MARKERS.search(n)
        or (
            (
                n.startswith(_DIFFUSERS_ROOTS)
                or (n.startswith("transformer.") and "transformer_blocks." in n)
            )
            and split_adapter_key(n) is not None
        )
    ]
    if kohya:
        facts["layout"] = "kohya"
        f.error(
            "kohya_format",
            f"This is a kohya-ss / LyCORIS style LoRA ({len(kohya)} tensors like "
            f"{kohya[0]!r}), not a PEFT adapter. Convert it to PEFT format "
            "(adapter_config.json plus base_model.model.*.lora_A/lora_B.weight) and upload that.",
            tensor=kohya[0],
        )
        return False
    if diffusers:
        facts["layout"] = "diffusers"
        f.error(
            "diffusers_format",
            f"This is a diffusers-style LoRA ({len(diffusers)} tensors like {diffusers[0]!r}) "
            "for a pipeline component; Strata accepts PEFT adapters saved with "
            "PeftModel.save_pretrained (keys under base_model.model.).",
            tensor=diffusers[0],
        )
        return False
    facts["layout"] = "peft"
    return True


def _config_facts(
    cfg: LoraConfig, base_id: str | None, f: FindingCollector, facts: dict[str, Any]
) -> dict[str, Any]:
    """Record serving-relevant config facts; return the normalized config."""
    original = cfg.raw.get("base_model_name_or_path")
    facts.update(
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        target_modules=list(cfg.target_modules)
        if isinstance(cfg.target_modules, tuple)
        else cfg.target_modules,
        modules_to_save=list(cfg.modules_to_save),
        bias=cfg.bias,
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        fan_in_fan_out=cfg.fan_in_fan_out,
        original_base_model_name_or_path=original if isinstance(original, str) else None,
        declared_base_id=base_id,
    )
    check = _base_name_check(cfg.base_model_name_or_path, base_id)
    facts["base_model_name_check"] = check
    if check == "local_path":
        f.info(
            "base_model_is_local_path",
            f"adapter_config.json names the local path {cfg.base_model_name_or_path!r:.200} "
            f"as its base; the hub records {base_id!r} instead.",
        )
    elif check == "mismatch":
        f.warning(
            "base_model_name_mismatch",
            f"adapter_config.json names base {cfg.base_model_name_or_path!r:.200} but the "
            f"adapter is uploaded for {base_id!r}; the hub rewrites the name, but make sure "
            "it was trained on this base.",
        )
    normalized = copy.deepcopy(cfg.raw)
    if base_id is not None:
        normalized["base_model_name_or_path"] = base_id
    return normalized


def _base_name_check(named: str | None, base_id: str | None) -> str:
    """How the config's base name relates to the declared base.

    ``match``; ``same_name`` (a mirror, a local copy or an HF cache path with the same
    repository name); ``local_path`` (a path that says nothing about the model, which is
    what PEFT writes when the base was loaded from disk); ``mismatch``; ``absent``.
    """
    if base_id is None:
        return "no_declared_base"
    if not named:
        return "absent"
    if named.lower() == base_id.lower():
        return "match"
    path = named.replace("\\", "/").rstrip("/")
    cached = re.search(r"models--([^/]+?)--([^/]+)", path)  # ~/.cache/huggingface/hub layout
    if cached and f"{cached[1]}/{cached[2]}".lower() == base_id.lower():
        return "match"
    want = base_id.rsplit("/", 1)[-1].lower()
    if path.rsplit("/", 1)[-1].lower() == want or (cached and cached[2].lower() == want):
        return "same_name"
    if path.startswith(("/", "~", ".")) or re.match(r"^[A-Za-z]:/", path):
        return "local_path"
    return "mismatch"


def _base_index(
    manifest: Mapping[str, Mapping[str, Any]] | None, f: FindingCollector
) -> BaseIndex | None:
    if manifest is None:
        return None
    entries: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in manifest.items():
        dtype = entry.get("dtype") if isinstance(entry, Mapping) else None
        shape = entry.get("shape") if isinstance(entry, Mapping) else None
        if (
            not isinstance(name, str)
            or not isinstance(dtype, str)
            or not isinstance(shape, list | tuple)
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            f.error(
                "bad_base_manifest",
                f"The base manifest entry {name!r:.120} is malformed; re-index the base model.",
            )
            return None
        entries[name] = (dtype, tuple(shape))
    return BaseIndex(entries)


__all__ = [
    "VLLM_DEFAULT_MAX_LORA_RANK",
    "VLLM_MAX_LORA_RANK",
    "BaseIndex",
    "Limits",
    "WeightFile",
    "check_header_compat",
    "regex_problem",
    "validate_adapter",
]
