"""Header-level adapter checks: every tensor's role, dtype and shape against the base.

Used by :mod:`workers.validate`; reads names, dtypes and shapes only. Which modules may
carry LoRA weights comes from :class:`workers.validate_config.Targeting`, so the validator
accepts exactly the adapters PEFT would have produced for the base, and explains the rest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.findings import FindingCollector
from workers.lora import PEFT_PREFIX, LoraConfig, LoraModule, group_lora_tensors, split_adapter_key
from workers.safetensors_io import FLOAT_DTYPES, RangeReader, SafetensorsHeader, TensorInfo
from workers.validate_config import (
    ConfigChecker,
    Limits,
    RegexBudget,
    RegexBudgetExceeded,
    Targeting,
    dotted,
    name_matches,
)
from workers.validate_numeric import ModulePlan, TensorRef

#: vLLM's default ``--max-lora-rank``; adapters above it need the server started with more.
VLLM_DEFAULT_MAX_LORA_RANK = 16
#: The largest ``--max-lora-rank`` vLLM accepts.
VLLM_MAX_LORA_RANK = 512

_LM_HEAD_NAMES = frozenset({"lm_head", "embed_out", "output_layer"})
_EMBEDDING_NAMES = frozenset(
    {"embed_tokens", "word_embeddings", "wte", "embed_in", "tok_embeddings"}
)


class BaseIndex:
    """The base manifest, with lookups that follow :func:`workers.lora.base_weight_name`."""

    def __init__(self, entries: dict[str, tuple[str, tuple[int, ...]]]) -> None:
        self.entries = entries
        self._suffixes: dict[str, list[str]] | None = None

    def resolve(self, name: str) -> str | None:
        """The base tensor ``name`` refers to, allowing a prefix on either side (``bert.``).

        Same rule as ``base_weight_name(module, names)`` for ``name = module + ".weight"``,
        but indexed, so resolving every module of a large adapter stays linear.
        """
        if name in self.entries:
            return name
        if self._suffixes is None:  # built on the first miss; exact names are the norm
            self._suffixes = {}
            for base in self.entries:
                parts = base.split(".")
                for i in range(1, len(parts)):
                    self._suffixes.setdefault(".".join(parts[i:]), []).append(base)
        candidates = self._suffixes.get(name, [])
        if len(candidates) == 1:
            return candidates[0]
        parts = name.split(".")
        for i in range(1, len(parts) - 1):
            shorter = ".".join(parts[i:])
            if shorter in self.entries:
                return shorter
        return None

    def modules(self) -> Iterable[tuple[str, str]]:
        """(module, weight name) for every weight of 2+ dims: what a LoRA layer can wrap."""
        for name, (_dtype, shape) in self.entries.items():
            if name.endswith(".weight") and len(shape) >= 2 and ".base_layer." not in name:
                yield name[: -len(".weight")], name


def _layer_template(name: str) -> str:
    return re.sub(r"(?<=\.)\d+(?=\.)", "#", name)


@dataclass
class Upload:
    """The parsed containers: per-file headers and which file holds each tensor."""

    files: list[tuple[RangeReader, SafetensorsHeader]] = field(default_factory=list)
    where: dict[str, int] = field(default_factory=dict)

    def info(self, name: str) -> TensorInfo:
        return self.files[self.where[name]][1].tensors[name]

    def ref(self, name: str) -> TensorRef:
        return TensorRef(self.where[name], self.info(name))


def _shape(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class StructureChecker:
    """Config semantics and every tensor's role, dtype and shape; no tensor data is read."""

    def __init__(
        self,
        cfg: LoraConfig,
        upload: Upload,
        base: BaseIndex | None,
        limits: Limits,
        findings: FindingCollector,
        facts: dict[str, Any],
    ) -> None:
        self.cfg = cfg
        self.upload = upload
        self.base = base
        self.limits = limits
        self.f = findings
        self.facts = facts
        self.budget = RegexBudget(limits.max_regex_seconds)
        self.plans: list[ModulePlan] = []
        #: Verbatim tensors (modules_to_save) -> dtype of the base weight they replace.
        self.saved_dtypes: dict[str, str] = {}
        #: Adapter modules (PEFT's namespace) whose weight was found in the base.
        self.in_base: set[str] = set()
        self._templates: BaseIndex | None = None

    def run(self) -> tuple[list[ModulePlan], dict[str, str]]:
        targeting = ConfigChecker(self.cfg, self.limits, self.f, self.budget).check()
        try:
            self._check_tensors(targeting)
        except RegexBudgetExceeded:
            self.f.error(
                "regex_too_slow",
                f"Matching target_modules and the pattern keys against module names took "
                f"over {self.limits.max_regex_seconds:g}s; use plain module names or a "
                "simpler regular expression.",
            )
            return [], {}
        return self.plans, self.saved_dtypes

    # -- tensors --------------------------------------------------------------------------

    def _check_tensors(self, targeting: Targeting | None) -> None:
        f, upload = self.f, self.upload
        peft_names: list[str] = []
        leftovers: list[str] = []
        usable: set[str] = set()
        for name in upload.where:
            info = upload.info(name)
            if info.dtype not in FLOAT_DTYPES:
                f.error(
                    "non_float_dtype",
                    f"{name} is stored as {info.dtype}; adapter weights must be floating point "
                    "(F16, BF16 or F32).",
                    tensor=name,
                )
            else:
                usable.add(name)
            if split_adapter_key(name) is None:
                leftovers.append(name)
            elif name.startswith(PEFT_PREFIX):
                peft_names.append(name)
            else:
                f.error(
                    "missing_peft_prefix",
                    f"{name} lacks the {PEFT_PREFIX!r} prefix PEFT saves adapter keys with, so "
                    "PEFT would silently ignore it. Save with PeftModel.save_pretrained.",
                    tensor=name,
                )
        modules, _ = group_lora_tensors(peft_names)
        covered: set[str] = set()
        ranks: set[int] = set()
        for module in modules.values():
            if len(module.module) > self.limits.max_module_name_length:
                f.error(
                    "module_name_too_long",
                    f"A module name is {len(module.module)} characters long; the limit is "
                    f"{self.limits.max_module_name_length}.",
                    module=module.module[:80],
                )
                continue
            rank = self._check_module(module, targeting, usable, covered)
            if rank is not None:
                ranks.add(rank)
        self._check_leftovers(leftovers, modules, targeting)
        if targeting is not None and self.base is not None:
            self._check_targets_in_base(targeting, covered)
        self._serving_facts(modules, ranks)

    def _check_module(
        self,
        module: LoraModule,
        targeting: Targeting | None,
        usable: set[str],
        covered: set[str],
    ) -> int | None:
        """Check one LoRA module; return its rank when its halves are consistent."""
        f, cfg, name = self.f, self.cfg, module.module
        a_name, b_name = module.tensors.get("A"), module.tensors.get("B")
        mag_name = module.tensors.get("magnitude")
        if a_name is None or b_name is None:
            parts = {"lora_A": a_name, "lora_B": b_name, "lora_magnitude_vector": mag_name}
            have = " and ".join(p for p, n in parts.items() if n)
            lacks = " or ".join(p for p in ("lora_A", "lora_B") if not parts[p])
            f.error(
                "missing_lora_half",
                f"{name} has {have} but no {lacks}; both halves are needed to apply the update.",
                module=name,
            )
            return None
        if mag_name is not None and not cfg.use_dora:
            f.error(
                "unexplained_tensor",
                f"{mag_name} is a DoRA magnitude vector but use_dora is not set in the config.",
                tensor=mag_name,
            )
        elif mag_name is None and cfg.use_dora:
            f.error(
                "missing_dora_magnitude",
                f"use_dora is set but {name} has no lora_magnitude_vector.",
                module=name,
            )
        if targeting is not None and not targeting.targets(name):
            f.error(
                "module_not_targeted",
                f"{name} has LoRA weights but target_modules does not select it, so PEFT "
                "would never load them. Fix target_modules or drop those tensors.",
                module=name,
            )
        a, b = self.upload.info(a_name), self.upload.info(b_name)
        if not {a_name, b_name} <= usable:
            return None
        if len(a.shape) < 2 or len(b.shape) < 2 or any(d != 1 for d in b.shape[2:]):
            f.error(
                "bad_lora_shape",
                f"{name}: lora_A is {_shape(a.shape)} and lora_B is {_shape(b.shape)}; expected "
                "lora_A [r, in_features] and lora_B [out_features, r].",
                module=name,
            )
            return None
        rank = a.shape[0]
        if b.shape[1] != rank:
            f.error(
                "lora_rank_mismatch",
                f"{name}: lora_A has rank {rank} but lora_B has rank {b.shape[1]}; they come "
                "from different adapters or a broken export.",
                module=name,
            )
            return None
        if a.nbytes > self.limits.max_whole_tensor_bytes:
            f.error(
                "tensor_too_large",
                f"{a_name} is {a.nbytes} bytes; Strata checks lora_A tensors up to "
                f"{self.limits.max_whole_tensor_bytes} bytes.",
                tensor=a_name,
            )
            return None
        expected = self.budget.run(lambda: cfg.rank_for(name))
        if rank != expected:
            source = "rank_pattern" if expected != cfg.r else "r"
            f.error(
                "rank_mismatch",
                f"{name} has rank {rank} but the config's {source} says {expected}; PEFT would "
                "refuse to load it.",
                module=name,
            )
        alpha = self.budget.run(lambda: cfg.alpha_for(name))
        scale = alpha / math.sqrt(expected) if cfg.use_rslora else alpha / expected
        base_dtype = self._check_against_base(module, a, b, mag_name, rank, covered)
        if base_dtype is not False:
            self.plans.append(
                ModulePlan(
                    name,
                    self.upload.ref(a_name),
                    self.upload.ref(b_name),
                    rank,
                    alpha,
                    scale,
                    base_dtype if isinstance(base_dtype, str) else None,
                )
            )
        return rank

    def _check_against_base(
        self,
        module: LoraModule,
        a: TensorInfo,
        b: TensorInfo,
        mag_name: str | None,
        rank: int,
        covered: set[str],
    ) -> str | bool | None:
        """Shape checks against the base weight. Returns its dtype, None without a base,
        or False when the module does not fit the base (no numbers to compute)."""
        if self.base is None:
            return None
        f, name = self.f, module.module
        weight = self.base.resolve(f"{name}.weight") or self._tied_output_weight(name)
        if weight is None:
            self._not_in_base(name)
            return False
        covered.add(weight)
        self.in_base.add(name)
        dtype, shape = self.base.entries[weight]
        if len(shape) < 2:
            f.error(
                "shape_mismatch",
                f"{name} adapts {weight}, a {len(shape)}-D tensor; LoRA only applies to "
                "Linear, Embedding and Conv weights.",
                module=name,
            )
            return False
        ins: tuple[int, ...]
        if module.embedding:
            out, ins, layout = shape[1], (shape[0],), "[num_embeddings, embedding_dim]"
        elif self.cfg.fan_in_fan_out and len(shape) == 2:
            out, ins, layout = shape[1], (shape[0],), "[in, out] (fan_in_fan_out)"
        else:
            out, ins, layout = shape[0], tuple(shape[1:]), "[out, in]"
        want_a = (rank, *ins)
        want_b = (out, rank, *([1] * (len(ins) - 1)))
        if a.shape != want_a or b.shape != want_b:
            f.error(
                "shape_mismatch",
                f"{name}: lora_A is {_shape(a.shape)} and lora_B is {_shape(b.shape)}, but base "
                f"weight {weight} is {_shape(shape)} {layout}, so they must be "
                f"{_shape(want_a)} and {_shape(want_b)}. Was it trained on another base?",
                module=name,
            )
            return False
        if mag_name is not None:
            mag = self.upload.info(mag_name)
            if mag.shape != (out,):
                f.error(
                    "shape_mismatch",
                    f"{mag_name} is {_shape(mag.shape)}; a DoRA magnitude for {weight} is [{out}].",
                    tensor=mag_name,
                )
        if rank >= min(out, math.prod(ins)):
            f.warning(
                "rank_not_low",
                f"{name} has rank {rank}, not below the weight's dimensions {_shape(shape)}: "
                "it stores as much as the full weight.",
                module=name,
            )
        if self._all_linear_excludes(name, shape):
            f.error(
                "module_not_targeted",
                f"{name} is not a linear layer PEFT's 'all-linear' would select.",
                module=name,
            )
        return dtype

    def _all_linear_excludes(self, name: str, shape: tuple[int, ...]) -> bool:
        if self.cfg.target_modules != "all-linear":
            return False
        return len(shape) != 2 or name.rsplit(".", 1)[-1] in _LM_HEAD_NAMES

    def _tied_output_weight(self, module: str) -> str | None:
        """The input embedding an output head is tied to, when the checkpoint stores no
        ``lm_head.weight`` (tied embeddings): same [vocab, hidden] shape as the head."""
        assert self.base is not None
        if module.rsplit(".", 1)[-1] not in _LM_HEAD_NAMES:
            return None
        tied = [
            name
            for name, (_dtype, shape) in self.base.entries.items()
            if len(shape) == 2
            and name.removesuffix(".weight").rsplit(".", 1)[-1] in _EMBEDDING_NAMES
        ]
        return tied[0] if len(tied) == 1 else None

    def _not_in_base(self, module: str) -> None:
        assert self.base is not None
        template = _layer_template(f"{module}.weight")
        if template != f"{module}.weight":
            if self._templates is None:  # built once, on the first module not in the base
                self._templates = BaseIndex(
                    {_layer_template(n): e for n, e in self.base.entries.items()}
                )
            if self._templates.resolve(template) is not None:
                indices = re.findall(r"(?<=\.)\d+(?=\.)", module)
                self.f.error(
                    "layer_not_in_base",
                    f"{module} refers to layer index {'.'.join(indices)}, which the base model "
                    "does not have. Was it trained on a deeper model?",
                    module=module,
                )
                return
        self.f.error(
            "module_not_in_base",
            f"{module} has LoRA weights but the base model has no {module}.weight. Was it "
            "trained on another base?",
            module=module,
        )

    def _check_leftovers(
        self, leftovers: list[str], modules: dict[str, LoraModule], targeting: Targeting | None
    ) -> None:
        """Tensors that are not lora_A/lora_B: modules_to_save, trained biases, or refused."""
        f, base, cfg = self.f, self.base, self.cfg
        saved_count, bias_count = 0, 0
        saved_missing: set[str] = set()
        checker = targeting or Targeting(self.budget, saved=cfg.modules_to_save)
        for name in leftovers:
            if not name.startswith(PEFT_PREFIX):
                f.error(
                    "unexplained_tensor",
                    f"{name} is neither a LoRA weight nor a PEFT-saved module, and nothing in "
                    "the config explains it. Remove it.",
                    tensor=name,
                )
                continue
            # PEFT saves a targeted embedding's full weight as ``<module>.base_layer.weight``.
            path = name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
            owner = path.rsplit(".", 1)[0]
            info = self.upload.info(name)
            weight = base.resolve(path) if base is not None else None
            base_entry = base.entries[weight] if base is not None and weight else None
            if checker.is_saved(owner):
                saved_count += 1
                if base is not None and base_entry is None:
                    saved_missing.add(owner)
                elif base_entry is not None and base_entry[1] != info.shape:
                    self._shape_differs(name, info, weight, base_entry[1])
                elif base_entry is not None:
                    self.saved_dtypes[name] = base_entry[0]
                continue
            lora_bias_owner = owner in modules
            if (
                path.endswith(".bias")
                and cfg.bias != "none"
                and (cfg.bias == "all" or lora_bias_owner)
            ):
                bias_count += 1
                if base is not None and base_entry is None:
                    f.error(
                        "module_not_in_base",
                        f"{name} is a trained bias for a module the base model does not have.",
                        tensor=name,
                    )
                elif base_entry is not None and base_entry[1] != info.shape:
                    self._shape_differs(name, info, weight, base_entry[1])
                continue
            if base_entry is not None and base_entry[1] == info.shape:
                f.error(
                    "base_weight_smuggled",
                    f"{name} is a full copy of base weight {weight} {_shape(info.shape)}, not a "
                    "LoRA weight, and modules_to_save does not list it. Loading the adapter "
                    "would silently replace that weight; list it in modules_to_save or drop it.",
                    tensor=name,
                )
            elif base_entry is not None:
                f.error(
                    "base_weight_resized",
                    f"{name} is {_shape(info.shape)} but base weight {weight} is "
                    f"{_shape(base_entry[1])}: the adapter was trained with a resized "
                    "vocabulary or another base, and cannot apply to this one.",
                    tensor=name,
                )
            else:
                f.error(
                    "unexplained_tensor",
                    f"{name} is neither a LoRA weight nor a module listed in modules_to_save, "
                    "and nothing in the config explains it. Remove it.",
                    tensor=name,
                )
        for owner in sorted(saved_missing):
            f.warning(
                "saved_module_not_in_base",
                f"modules_to_save module {owner} does not exist in the base model (a new head "
                "for a task?); the adapter cannot be merged into the base.",
                module=owner,
            )
        self.facts.update(saved_tensor_count=saved_count, trains_bias=bias_count > 0)

    def _shape_differs(
        self, name: str, info: TensorInfo, weight: str | None, shape: tuple[int, ...]
    ) -> None:
        self.f.error(
            "shape_mismatch",
            f"{name} is {_shape(info.shape)} but it replaces base weight {weight}, which is "
            f"{_shape(shape)}.",
            tensor=name,
        )

    def _check_targets_in_base(self, targeting: Targeting, covered: set[str]) -> None:
        """Each target_modules entry should select something in the base, and each base
        module it selects should have LoRA weights."""
        assert self.base is not None
        if targeting.all_linear:
            return
        base_modules = list(self.base.modules())
        # Adapter modules found in the base count too: a regex is written against PEFT's
        # module names, which may carry a prefix the checkpoint's names lack.
        resolved = sorted(self.in_base)
        if targeting.regex is not None:
            regex = targeting.regex

            def selects(module: str) -> bool:
                return self.budget.run(lambda: regex.fullmatch(module) is not None)

            found = any(
                selects(m)
                for m in [*(bm for bm, _ in base_modules), *resolved]
                if len(m) <= self.limits.max_module_name_length
            )
            unmatched = [] if found else [regex.pattern]
        else:
            hit: set[str] = set()
            ends = dotted(targeting.names)
            for m in [*(bm for bm, _ in base_modules), *resolved]:
                if name_matches(m, targeting.names, ends):
                    hit.update(t for t in targeting.names if m == t or m.endswith(f".{t}"))
            unmatched = sorted(targeting.names - hit)
            found = bool(hit)
        if not found:
            described = targeting.regex.pattern if targeting.regex else sorted(targeting.names)
            self.f.error(
                "target_not_in_base",
                f"target_modules {described!r:.200} selects no module of the base model; the "
                "adapter was made for another architecture.",
            )
            return
        for entry in unmatched:
            self.f.warning(
                "unused_target",
                f"target_modules entry {entry!r} matches no module of the base model; it is "
                "ignored.",
            )
        missing = [
            bm
            for bm, weight in base_modules
            if weight not in covered
            and len(bm) <= self.limits.max_module_name_length
            and targeting.targets(bm)
        ]
        if missing:
            self.f.warning(
                "targeted_module_missing",
                f"target_modules selects {len(missing)} base modules that have no LoRA weights "
                f"(e.g. {missing[0]}); PEFT leaves them unchanged, but check the export.",
                module=missing[0],
            )

    def _serving_facts(self, modules: dict[str, LoraModule], ranks: set[int]) -> None:
        f, cfg = self.f, self.cfg
        leaf = {m.rsplit(".", 1)[-1] for m in modules}
        on_embedding = any(
            m.embedding or m.module.rsplit(".", 1)[-1] in _EMBEDDING_NAMES for m in modules.values()
        )
        on_lm_head = bool(leaf & _LM_HEAD_NAMES)
        max_rank = max(ranks, default=0)
        self.facts.update(
            lora_module_count=len(modules),
            ranks=sorted(ranks),
            max_rank=max_rank,
            vllm_default_max_lora_rank=VLLM_DEFAULT_MAX_LORA_RANK,
            fits_vllm_default_rank=max_rank <= VLLM_DEFAULT_MAX_LORA_RANK,
            targeted_module_names=sorted(leaf),
            lora_on_embedding=on_embedding,
            lora_on_lm_head=on_lm_head,
        )
        if max_rank > VLLM_MAX_LORA_RANK:
            f.warning(
                "rank_above_vllm_max",
                f"The adapter's rank is {max_rank}; vLLM serves LoRA ranks up to "
                f"{VLLM_MAX_LORA_RANK} only.",
            )
        elif max_rank > VLLM_DEFAULT_MAX_LORA_RANK:
            f.info(
                "rank_above_vllm_default",
                f"The adapter's rank is {max_rank}; vLLM must be started with "
                f"--max-lora-rank {max_rank} or more (its default is "
                f"{VLLM_DEFAULT_MAX_LORA_RANK}).",
            )
        if cfg.modules_to_save:
            f.warning(
                "modules_to_save_present",
                f"modules_to_save ({', '.join(cfg.modules_to_save)}) stores full module copies; "
                "PEFT loads them but vLLM and several other engines cannot serve them.",
            )
        if on_embedding:
            f.warning(
                "embedding_lora",
                "The adapter puts LoRA on an embedding layer; several serving engines do not "
                "support that.",
            )
        if on_lm_head:
            f.warning(
                "lm_head_lora",
                "The adapter puts LoRA on the output head (lm_head); several serving engines "
                "do not support that.",
            )
        if self.facts.get("trains_bias"):
            f.warning(
                "bias_trained",
                f"bias is {cfg.bias!r}: the adapter replaces base biases, which most serving "
                "engines ignore.",
            )
