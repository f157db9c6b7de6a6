"""Benchmark a LoRA stack on its base: quality on eval sets, and speed merged vs unmerged.

:func:`run_benchmark` loads the base once and, in this order:

1. quality of the base alone on every eval set;
2. applies the stack with PEFT, every adapter active at once (``W + sum scale * B @ A``,
   exactly what a merge of the stack computes), and measures the same quality;
3. times forward passes of that unmerged model;
4. merges the stack in memory (``merge_and_unload``), or loads a merged folder when one
   is given, and times it the same way.

Causal LMs are scored by token-level loss and perplexity; encoders (models without a
``*ForCausalLM`` architecture, e.g. MiniLM's ``BertModel``) by embedding drift against
the base and, for eval sets with scored pairs, Spearman's rho of pair cosines.

Results record everything needed to reproduce them: the caller's ids for the base and
adapters, eval set hashes, settings, :data:`BENCH_VERSION` and the hardware. Nothing here
knows about Django or Celery; torch, transformers and peft are imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workers.bench_quality import (
    TextPair,
    budget_tokens,
    causal_lm_loss,
    cosine_rows,
    encoder_stats,
    pad_token_id,
)
from workers.bench_speed import fixed_ids, measure_speed

if TYPE_CHECKING:
    import torch

#: Bump whenever a change can move any number in a result.
BENCH_VERSION = "strata-bench/1"

ModelKind = Literal["causal_lm", "encoder"]


# --------------------------------------------------------------------------- errors


class EvalSetError(ValueError):
    """An eval set file cannot be used (the user's file). ``code`` is stable for clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class BenchmarkError(Exception):
    """The benchmark cannot run or finish. ``out_of_memory`` may succeed elsewhere or with
    smaller settings; the caller decides whether to retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


# --------------------------------------------------------------------------- eval sets


@dataclass(frozen=True)
class EvalSetLimits:
    max_bytes: int = 8 * 1024 * 1024
    #: JSONL records, or documents of a plain-text file.
    max_records: int = 50_000
    max_text_chars: int = 100_000


@dataclass(frozen=True)
class EvalSet:
    """Parsed eval set. ``texts`` holds every record's ``text``; ``pairs`` the scored ones."""

    name: str
    sha256: str
    texts: tuple[str, ...]
    pairs: tuple[TextPair, ...] = ()
    format: Literal["jsonl", "text"] = "text"

    @classmethod
    def from_texts(cls, name: str, texts: Sequence[str], pairs: Sequence[TextPair] = ()) -> EvalSet:
        """An in-memory eval set; ``sha256`` is over a canonical JSON of texts and pairs
        (not a file's bytes, since there is no file)."""
        canonical = {"texts": list(texts), "pairs": [[p.text, p.text_pair, p.score] for p in pairs]}
        data = json.dumps(canonical, ensure_ascii=False, sort_keys=True).encode()
        return cls(name, hashlib.sha256(data).hexdigest(), tuple(texts), tuple(pairs), "jsonl")


def _detect_format(name: str, text: str) -> Literal["jsonl", "text"]:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".txt"):
        return "text"
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "jsonl" if first.lstrip().startswith("{") else "text"


def _check_text(value: str, where: str, limits: EvalSetLimits) -> str:
    if len(value) > limits.max_text_chars:
        raise EvalSetError(
            "text_too_long", f"{where}: {len(value)} characters (limit {limits.max_text_chars})."
        )
    return value


def _parse_jsonl(text: str, limits: EvalSetLimits) -> tuple[list[str], list[TextPair]]:
    texts: list[str] = []
    pairs: list[TextPair] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(texts) >= limits.max_records:
            raise EvalSetError(
                "too_many_records", f"More than {limits.max_records} records (line {number})."
            )
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise EvalSetError("invalid_json", f"Line {number} is not JSON: {exc}.") from exc
        if not isinstance(record, dict):
            raise EvalSetError("invalid_record", f"Line {number} is not a JSON object.")
        value = record.get("text")
        if value is None:
            raise EvalSetError("missing_text", f"Line {number} has no 'text' field.")
        if not isinstance(value, str):
            raise EvalSetError("invalid_record", f"Line {number}: 'text' is not a string.")
        if not value.strip():
            raise EvalSetError("empty_text", f"Line {number}: 'text' is empty.")
        texts.append(_check_text(value, f"Line {number}", limits))
        has_pair, has_score = "text_pair" in record, "score" in record
        if has_pair != has_score:
            raise EvalSetError(
                "invalid_pair", f"Line {number}: 'text_pair' and 'score' go together."
            )
        if has_pair:
            other, score = record["text_pair"], record["score"]
            if not isinstance(other, str) or not other.strip():
                raise EvalSetError(
                    "invalid_pair", f"Line {number}: 'text_pair' is not a non-empty string."
                )
            # bool is an int subclass; true/false as a score is a mistake, not 1/0.
            if (
                isinstance(score, bool)
                or not isinstance(score, int | float)
                or not math.isfinite(score)
            ):
                raise EvalSetError(
                    "invalid_score", f"Line {number}: 'score' is not a finite number."
                )
            pairs.append(TextPair(value, _check_text(other, f"Line {number}", limits), score))
    return texts, pairs


def _parse_text(text: str, limits: EvalSetLimits) -> list[str]:
    """Paragraphs (separated by blank lines) when the file has blank lines between
    documents, else lines."""
    lines = text.strip().splitlines()
    if any(not line.strip() for line in lines):
        docs = [b.strip() for b in re.split(r"\n[ \t]*\n", "\n".join(lines)) if b.strip()]
    else:
        docs = [line.strip() for line in lines if line.strip()]
    if len(docs) > limits.max_records:
        raise EvalSetError(
            "too_many_records", f"{len(docs)} documents (limit {limits.max_records})."
        )
    for i, doc in enumerate(docs, 1):
        _check_text(doc, f"Document {i}", limits)
    return docs


def parse_eval_set(
    name: str,
    data: bytes,
    *,
    format: Literal["jsonl", "text"] | None = None,
    limits: EvalSetLimits = EvalSetLimits(),
) -> EvalSet:
    """Parse an eval set: JSONL (``text``, optionally ``text_pair`` + ``score``) or plain
    UTF-8 text. ``format=None`` goes by the name's extension, then by the first line."""
    if len(data) > limits.max_bytes:
        raise EvalSetError("too_large", f"{name} is {len(data)} bytes (limit {limits.max_bytes}).")
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EvalSetError("not_utf8", f"{name} is not UTF-8 text: {exc}.") from exc
    if "\x00" in text:
        raise EvalSetError("not_utf8", f"{name} contains NUL bytes (a binary file?).")
    kind = format or _detect_format(name, text)
    if kind == "jsonl":
        texts, pairs = _parse_jsonl(text, limits)
    elif kind == "text":
        texts, pairs = _parse_text(text, limits), []
    else:
        raise EvalSetError("unknown_format", f"Unknown eval set format {kind!r}.")
    if not texts:
        raise EvalSetError("empty", f"{name} has no documents.")
    return EvalSet(name, digest, tuple(texts), tuple(pairs), kind)


def load_eval_set(
    path: Path,
    *,
    name: str | None = None,
    format: Literal["jsonl", "text"] | None = None,
    limits: EvalSetLimits = EvalSetLimits(),
) -> EvalSet:
    """:func:`parse_eval_set` on a file, reading no more than the size limit allows."""
    with path.open("rb") as fh:
        data = fh.read(limits.max_bytes + 1)
    return parse_eval_set(name or path.name, data, format=format, limits=limits)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BenchSettings:
    """Everything besides the inputs that decides the numbers; recorded in each result."""

    #: Token budget per eval set (per model): the first documents, in file order.
    max_tokens: int = 4096
    #: Longest sequence; longer documents are truncated.
    max_length: int = 256
    #: Sequences per forward pass in quality runs.
    batch_size: int = 4
    #: Scored pairs used for Spearman (encoders).
    max_pairs: int = 512
    speed: bool = True
    speed_batch: int = 1
    speed_seq_len: int = 256
    warmup: int = 2
    repeats: int = 5
    #: Compute dtype. float32 by default: 16-bit activations add noise that can hide a
    #: small adapter's effect on loss.
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_length", "batch_size", "speed_batch", "speed_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.repeats < 1 or self.warmup < 0 or self.max_pairs < 0:
            raise ValueError("repeats must be >= 1, warmup and max_pairs >= 0")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype {self.dtype!r} is not float32, bfloat16 or float16")


# --------------------------------------------------------------------------- results


@dataclass
class BenchmarkResult:
    bench_version: str
    model_kind: ModelKind
    inputs: dict[str, Any]
    settings: dict[str, Any]
    environment: dict[str, Any]
    eval_sets: list[dict[str, Any]]
    speed: dict[str, Any] | None
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        # NaN/inf are not JSON; they only appear for empty inputs, as null.
        return json.dumps(_finite(self.to_dict()), sort_keys=True, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Hardware and library versions: what besides the inputs can move the numbers."""
    import peft
    import torch
    import transformers

    env: dict[str, Any] = {
        "bench_version": BENCH_VERSION,
        "device": str(device),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu_name=props.name,
            gpu_memory_bytes=props.total_memory,
            cuda=torch.version.cuda,
        )
    return env


# --------------------------------------------------------------------------- models


def model_kind(model_dir: Path) -> ModelKind:
    """``causal_lm`` when config.json names a ``*ForCausalLM`` architecture, else ``encoder``."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchmarkError(
            "invalid_base", f"{model_dir}: no readable config.json ({exc})."
        ) from exc
    archs = config.get("architectures") or ()
    return "causal_lm" if any(str(a).endswith("ForCausalLM") for a in archs) else "encoder"


def _load_model(model_dir: Path, kind: ModelKind, dtype: torch.dtype, device: torch.device) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM

    cls = AutoModelForCausalLM if kind == "causal_lm" else AutoModel
    model: Any = cls.from_pretrained(model_dir, dtype=dtype)
    return model.to(device).eval()


def _load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError) as exc:
        raise BenchmarkError(
            "missing_tokenizer", f"{model_dir}: no usable tokenizer files ({exc})."
        ) from exc


def _adapter_keys(adapter_dir: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as fh:
        return set(fh.keys())


def apply_stack(model: Any, adapter_dirs: Sequence[Path]) -> Any:
    """Wrap ``model`` in a PeftModel with every adapter of the stack active at once.

    All-active unmerged LoRA computes ``x W^T + sum_i scale_i x A_i^T B_i^T``: the stack's
    meaning, which merging it computes too. Every adapter tensor must land in the model:
    PEFT only warns about keys it cannot place, which would silently bench a no-op.
    """
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    names = [f"stack_{i}" for i in range(len(adapter_dirs))]
    try:
        peft: Any = PeftModel.from_pretrained(model, adapter_dirs[0], adapter_name=names[0])
        for name, adapter_dir in zip(names[1:], adapter_dirs[1:], strict=True):
            peft.load_adapter(adapter_dir, adapter_name=name)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise BenchmarkError("invalid_adapter", f"PEFT cannot load the stack: {exc}") from exc
    except RuntimeError as exc:  # load_state_dict's "size mismatch"
        if _is_oom(exc):
            raise
        raise BenchmarkError("adapter_mismatch", f"PEFT cannot load the stack: {exc}") from exc
    for name, adapter_dir in zip(names, adapter_dirs, strict=True):
        # Saved names drop the adapter name, exactly as save_pretrained writes them.
        loaded = set(get_peft_model_state_dict(peft, adapter_name=name))
        missing = sorted(_adapter_keys(adapter_dir) - loaded)
        if missing:
            raise BenchmarkError(
                "adapter_mismatch",
                f"{adapter_dir.name}: {len(missing)} tensors match no module of the base "
                f"(e.g. {missing[0]}); was it trained on another model class or base?",
            )
    peft.base_model.set_adapter(names)
    return peft.eval()


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    # CPU allocation failures are plain RuntimeErrors.
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _delta(base: float | None, adapter: float | None) -> float | None:
    if base is None or adapter is None:
        return None
    return adapter - base


# --------------------------------------------------------------------------- entry point


def run_benchmark(
    *,
    base_dir: Path,
    adapter_dirs: Sequence[Path],
    eval_sets: Sequence[EvalSet],
    device: str | None = None,
    settings: BenchSettings = BenchSettings(),
    base_id: str | None = None,
    adapter_ids: Sequence[str] | None = None,
    merged_dir: Path | None = None,
    tokenizer_dir: Path | None = None,
) -> BenchmarkResult:
    """Benchmark the stack ``adapter_dirs`` (applied in order) on ``base_dir``.

    ``base_id``/``adapter_ids`` are the caller's identities for the inputs (e.g. repo and
    revision), recorded as given; folder names are used when they are omitted.
    ``merged_dir``, when given, is timed as the merged model instead of an in-memory
    ``merge_and_unload``. Raises :class:`BenchmarkError` (``out_of_memory``,
    ``invalid_adapter``, ``adapter_mismatch``, ``missing_tokenizer``...).
    """
    import torch

    if not adapter_dirs:
        raise BenchmarkError("no_adapters", "A benchmark needs at least one adapter.")
    if adapter_ids is not None and len(adapter_ids) != len(adapter_dirs):
        raise ValueError("adapter_ids must name every adapter directory")
    names = [e.name for e in eval_sets]
    if len(set(names)) != len(names):
        raise ValueError("eval set names must be unique")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    kind = model_kind(base_dir)
    inputs = {
        "base_id": base_id or base_dir.name,
        "adapter_ids": list(adapter_ids or [d.name for d in adapter_dirs]),
        "merged_id": merged_dir.name if merged_dir else None,
        "eval_sets": [
            {
                "name": e.name,
                "sha256": e.sha256,
                "format": e.format,
                "texts": len(e.texts),
                "pairs": len(e.pairs),
            }
            for e in eval_sets
        ],
    }
    stages: list[str] = []
    timings: dict[str, float] = {}
    precision = torch.get_float32_matmul_precision()
    # TF32 (if the process enabled it) would make GPU numbers depend on the GPU model.
    torch.set_float32_matmul_precision("highest")
    try:
        runner = _Runner(kind, dev, getattr(torch, settings.dtype), settings, timings, stages)
        eval_results, speed = runner.run(
            base_dir, adapter_dirs, eval_sets, merged_dir, tokenizer_dir or base_dir
        )
    except BenchmarkError:
        raise
    except BaseException as exc:
        if not _is_oom(exc):
            raise
        stage = stages[-1] if stages else "start"
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        raise BenchmarkError(
            "out_of_memory",
            f"Out of {'GPU' if dev.type == 'cuda' else 'host'} memory during {stage} on "
            f"{dev} ({exc.__class__.__name__}). Smaller batch_size, max_length or "
            "speed_batch settings, or a larger device, may fit.",
        ) from exc
    finally:
        torch.set_float32_matmul_precision(precision)
    return BenchmarkResult(
        bench_version=BENCH_VERSION,
        model_kind=kind,
        inputs=inputs,
        settings=asdict(settings),
        environment=environment(dev),
        eval_sets=eval_results,
        speed=speed,
        timings_s=timings,
    )


class _Runner:
    """One benchmark run; holds the settings so the steps below stay short."""

    def __init__(
        self,
        kind: ModelKind,
        device: torch.device,
        dtype: torch.dtype,
        settings: BenchSettings,
        timings: dict[str, float],
        stages: list[str],
    ) -> None:
        self.kind = kind
        self.device = device
        self.dtype = dtype
        self.s = settings
        self.timings = timings
        self.stages = stages

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Record the stage (for out-of-memory messages) and its wall time."""
        self.stages.append(name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 4)

    def _seed(self) -> None:
        import torch

        # Nothing below samples, but seeding makes any hidden randomness repeatable.
        torch.manual_seed(self.s.seed)

    def run(
        self,
        base_dir: Path,
        adapter_dirs: Sequence[Path],
        eval_sets: Sequence[EvalSet],
        merged_dir: Path | None,
        tokenizer_dir: Path,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        total = time.perf_counter()
        self._seed()
        with self.step("load"):
            tokenizer = _load_tokenizer(tokenizer_dir)
            model = _load_model(base_dir, self.kind, self.dtype, self.device)
        with self.step("quality_base"):
            base = [self.quality(model, tokenizer, e) for e in eval_sets]
        with self.step("apply_stack"):
            peft = apply_stack(model, adapter_dirs)
        with self.step("quality_adapter"):
            tuned = [self.quality(peft, tokenizer, e) for e in eval_sets]
        results = [self.compare(e, b, t) for e, b, t in zip(eval_sets, base, tuned, strict=True)]
        speed = None
        if self.s.speed:
            vocab_size = int(model.config.vocab_size)
            # Hand over the only reference, so a merged folder never shares memory with it.
            holder = [peft]
            del model, peft
            speed = self.speed(holder, merged_dir, vocab_size)
        self.timings["total"] = round(time.perf_counter() - total, 4)
        return results, speed

    # ----------------------------------------------------------------- quality

    def quality(self, model: Any, tokenizer: Any, eval_set: EvalSet) -> Any:
        s = self.s
        self._seed()
        if self.kind == "causal_lm":
            budget = budget_tokens(
                tokenizer,
                eval_set.texts,
                max_tokens=s.max_tokens,
                max_length=s.max_length,
                min_length=2,
            )
            return causal_lm_loss(
                model,
                budget,
                batch_size=s.batch_size,
                pad_id=pad_token_id(tokenizer),
                device=self.device,
            )
        return encoder_stats(
            model,
            tokenizer,
            eval_set.texts,
            eval_set.pairs,
            max_tokens=s.max_tokens,
            max_length=s.max_length,
            max_pairs=s.max_pairs,
            batch_size=s.batch_size,
            device=self.device,
        )

    def compare(self, eval_set: EvalSet, base: Any, tuned: Any) -> dict[str, Any]:
        head = {"name": eval_set.name, "sha256": eval_set.sha256}
        if self.kind == "causal_lm":
            return {
                **head,
                "metric": "perplexity",
                "base": base.as_dict(),
                "adapter": tuned.as_dict(),
                "delta": {
                    "loss": tuned.loss - base.loss,
                    "perplexity": tuned.perplexity - base.perplexity,
                    "perplexity_ratio": tuned.perplexity / base.perplexity,
                },
            }
        cos = cosine_rows(base.embeddings, tuned.embeddings)
        mean_cos = float(cos.mean()) if len(cos) else math.nan
        adapter = {
            **tuned.summary(),
            "cosine_to_base_mean": mean_cos,
            "cosine_to_base_min": float(cos.min()) if len(cos) else math.nan,
        }
        return {
            **head,
            "metric": "embedding_drift",
            "base": base.summary(),
            "adapter": adapter,
            "delta": {
                # 0 for an adapter that changes nothing; grows as embeddings move away.
                "embedding_drift": 1.0 - mean_cos,
                "spearman": _delta(base.spearman, tuned.spearman),
            },
        }

    # ----------------------------------------------------------------- speed

    def speed(self, holder: list[Any], merged_dir: Path | None, vocab_size: int) -> dict[str, Any]:
        s = self.s
        peft = holder.pop()
        ids = fixed_ids(vocab_size, s.speed_batch, s.speed_seq_len, s.seed)
        kwargs: dict[str, Any] = {"warmup": s.warmup, "repeats": s.repeats, "device": self.device}
        with self.step("speed_unmerged"):
            unmerged, out_unmerged = measure_speed(peft, ids, **kwargs)
        with self.step("merge"):
            if merged_dir is not None:
                del peft  # one model in memory at a time
                merged = _load_model(merged_dir, self.kind, self.dtype, self.device)
            else:
                merged = peft.merge_and_unload()
        with self.step("speed_merged"):
            merged_stats, out_merged = measure_speed(merged, ids, **kwargs)
        diff = (out_merged - out_unmerged).abs()
        return {
            "unmerged": unmerged.as_dict(),
            "merged": merged_stats.as_dict(),
            "merged_source": "folder" if merged_dir is not None else "merge_and_unload",
            "speedup": unmerged.latency_median_s / merged_stats.latency_median_s,
            # A sanity check for free: both ran the same inputs, so their outputs should
            # agree up to float rounding (a large value means the merge is not the stack).
            "max_abs_output_diff": float(diff.max()),
            "max_abs_output": float(out_unmerged.abs().max()),
        }
