"""PEFT config semantics beyond parsing, and the guard around PEFT's regex matching.

``parse_adapter_config`` (workers.lora) decides whether the JSON is a usable LoRA config;
this module decides what Strata can accept (unsupported options, base-rewriting inits,
DoRA) and builds the :class:`Targeting` that says, as PEFT's
``check_target_module_exists`` would, which modules may carry LoRA weights.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, TypeVar

from workers.findings import FindingCollector
from workers.lora import LoraConfig
from workers.safetensors_io import DEFAULT_MAX_HEADER_BYTES

#: PEFT's layer-index lookup when ``layers_pattern`` is unset: the first numbered segment.
_DEFAULT_LAYER_RE = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")
_UNSET: tuple[Any, ...] = (None, False, "", [], {})

#: Options whose adapters Strata cannot check or merge faithfully, and why.
_UNSUPPORTED_OPTIONS: dict[str, str] = {
    "layer_replication": "it duplicates base layers, so the adapter does not fit the base",
    "target_parameters": "it adapts raw parameters (MoE experts), which Strata cannot merge",
    "trainable_token_indices": "it trains single embedding rows, which Strata cannot merge",
    "lora_bias": "it adds a bias to lora_B, which Strata cannot merge",
    "use_qalora": "it is laid out for a quantized base",
    "alora_invocation_tokens": "activated LoRA only applies after invocation tokens; merging it "
    "into the weights would change its behaviour",
    "use_bdlora": "its block-diagonal factors are not plain lora_A/lora_B",
    "megatron_config": "its tensors are laid out for Megatron tensor parallelism",
    "arrow_config": "Arrow routing mixes several adapters at inference time",
}
#: init_lora_weights values that rewrite the base weights during training. PEFT converts
#: such adapters to plain LoRA on save (and then writes init_lora_weights=True) only when
#: asked to; an unconverted one is meaningful solely on the rewritten base.
_BASE_MUTATING_INITS = ("pissa", "olora", "corda")

#: How PEFT embeds rank/alpha pattern keys and layers_pattern into its own regexes.
_KEY_WRAP = (r"(.*\.)?(", r")$")
_LAYERS_WRAP = (r"(?:^|.*?\.)", r"\.(?P<idx>\d+)\.")

_SRE: Any = import_module("re._parser")  # private but stable in 3.11/3.12; no typeshed stub
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep a hostile upload from costing unbounded time or memory."""

    max_files: int = 64
    max_total_bytes: int = 64 * 1024**3
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_tensors: int = 65_536
    max_rank: int = 4096
    max_module_name_length: int = 256
    #: Regex guard. PEFT matches target_modules and pattern keys with Python's backtracking
    #: ``re``; these bound the pattern's shape and the total time spent matching.
    max_pattern_length: int = 256
    max_regex_paths: int = 1 << 20
    max_regex_seconds: float = 2.0
    max_findings_per_code: int = 20
    #: 16 MiB: big enough to amortize a range request, small enough that glibc reuses the
    #: buffers instead of mapping fresh (page-faulting) memory for every read.
    read_chunk_bytes: int = 16 * 1024 * 1024
    #: lora_A is read in one piece (its Gram needs whole rows); bigger ones are refused.
    max_whole_tensor_bytes: int = 1024**3
    #: torch intra-op threads during the scan (restored afterwards); None keeps torch's
    #: default (all cores). Set 1 when several workers share the cores: oversubscribed
    #: OpenMP threads spin and were measured 7x slower than one thread on a loaded box.
    torch_threads: int | None = None
    exact_chunk_elements: int = 1 << 24


class RegexBudgetExceeded(Exception):
    """Matching user patterns took longer than ``Limits.max_regex_seconds`` in total."""


class RegexBudget:
    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def run(self, fn: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.left -= time.perf_counter() - start
            if self.left < 0:
                raise RegexBudgetExceeded


class _Refused(Exception):
    pass


_REPEATS = (_SRE.MAX_REPEAT, _SRE.MIN_REPEAT, _SRE.POSSESSIVE_REPEAT)


def _match_paths(sub: Any, in_repeat: bool, length: int) -> float:
    """Upper bound on the ways ``sub`` can match a name of ``length`` characters.

    Each variable quantifier multiplies by the counts it can take and each alternation by
    its branches; backtracking explores at most that many paths. Inside a repeated group
    any choice would multiply exponentially, so it is refused outright.
    """
    paths = 1.0
    for op, av in sub:
        if op in _REPEATS:
            low, high, body = av
            variable = low != high
            if in_repeat and variable:
                raise _Refused("it nests a variable quantifier inside a repeated group")
            paths *= _match_paths(body, in_repeat or high > 1, length)
            if variable:
                paths *= min(high, length) - min(low, length) + 1
        elif op == _SRE.BRANCH:
            if in_repeat:
                raise _Refused("it repeats an alternation")
            paths *= sum(_match_paths(branch, in_repeat, length) for branch in av[1])
        elif op in (_SRE.GROUPREF, _SRE.GROUPREF_EXISTS):
            raise _Refused("it uses a backreference")
        elif op == _SRE.SUBPATTERN:
            paths *= _match_paths(av[-1], in_repeat, length)
        elif op in (_SRE.ASSERT, _SRE.ASSERT_NOT):
            paths *= _match_paths(av[1], in_repeat, length)
        elif op == _SRE.ATOMIC_GROUP:
            paths *= _match_paths(av, in_repeat, length)
        paths = min(paths, 1e30)
    return paths


def regex_problem(pattern: str, limits: Limits, *, wrap: tuple[str, str] = ("", "")) -> str | None:
    """Why ``pattern`` is refused, or None.

    PEFT matches target_modules, and pattern keys inside its own wrapper (``wrap``: the
    text around the pattern), with Python's backtracking ``re``. We refuse what makes that
    exponential (choices inside a repeated group, backreferences) and patterns whose
    bound on backtracking paths over a ``max_module_name_length`` name exceeds
    ``max_regex_paths``; the time budget in :class:`RegexBudget` backs this up.
    """
    if len(pattern) > limits.max_pattern_length:
        return f"it is {len(pattern)} characters long; the limit is {limits.max_pattern_length}"
    try:
        with warnings.catch_warnings():  # "possible nested set" and friends: not our concern
            warnings.simplefilter("ignore", FutureWarning)
            _SRE.parse(pattern)
            # The wrapped form is what runs; some patterns only fail to compile inside it.
            parsed = _SRE.parse(wrap[0] + pattern + wrap[1])
    except (re.error, RecursionError, OverflowError) as exc:
        return f"it is not a valid regular expression ({exc})"
    try:
        paths = _match_paths(parsed, False, limits.max_module_name_length)
    except _Refused as exc:
        return f"{exc}, which makes matching time explode"
    if paths > limits.max_regex_paths:
        return (
            f"it can match a module name in about {paths:.2g} ways (the limit is "
            f"{limits.max_regex_paths:.2g}); use plain module names or fewer wildcards"
        )
    return None


def name_matches(module: str, names: frozenset[str], dotted: tuple[str, ...]) -> bool:
    """PEFT's list rule: ``key in names or key.endswith(f".{name}")`` for some name.

    ``dotted`` is ``tuple(f".{n}" for n in names)``: one C-level ``endswith`` call.
    """
    return module in names or module.endswith(dotted)


def dotted(names: frozenset[str]) -> tuple[str, ...]:
    """The ``dotted`` argument of :func:`name_matches`."""
    return tuple(f".{n}" for n in sorted(names))


@dataclass
class Targeting:
    """Decides, like PEFT's ``check_target_module_exists``, whether a module gets LoRA."""

    budget: RegexBudget
    regex: re.Pattern[str] | None = None
    names: frozenset[str] = frozenset()
    all_linear: bool = False
    exclude_regex: re.Pattern[str] | None = None
    exclude_names: frozenset[str] = frozenset()
    saved: tuple[str, ...] = ()
    layers: frozenset[int] | None = None
    layer_res: list[re.Pattern[str]] = field(default_factory=list)
    _dotted: tuple[str, ...] | None = field(default=None, repr=False)

    def is_saved(self, module: str) -> bool:
        """In modules_to_save (PEFT: ``(^|.*\\.){m}($|\\..*)``, taken literally here)."""
        wrapped = f".{module}."
        return any(f".{m}." in wrapped for m in self.saved)

    def targets(self, module: str) -> bool:
        if self.exclude_regex is not None:
            pattern = self.exclude_regex
            if self.budget.run(lambda: pattern.fullmatch(module) is not None):
                return False
        elif self.exclude_names and name_matches(
            module, self.exclude_names, dotted(self.exclude_names)
        ):
            return False
        if self.is_saved(module):
            return False  # PEFT never puts LoRA on a modules_to_save module
        if self.all_linear:
            return True
        if self.regex is not None:
            target = self.regex
            return self.budget.run(lambda: target.fullmatch(module) is not None)
        if self._dotted is None:
            self._dotted = dotted(self.names)
        if not name_matches(module, self.names, self._dotted):
            return False
        if self.layers is None:
            return True
        return self._layer_index(module) in self.layers

    def _layer_index(self, module: str) -> int | None:
        def first_index(pattern: re.Pattern[str]) -> re.Match[str] | None:
            return self.budget.run(lambda: pattern.match(module))

        for pattern in self.layer_res or [_DEFAULT_LAYER_RE]:
            match = first_index(pattern)
            if match is not None:
                return int(match.group("idx"))
        return None


class ConfigChecker:
    """Checks one parsed config, reporting into ``findings``."""

    def __init__(
        self, cfg: LoraConfig, limits: Limits, findings: FindingCollector, budget: RegexBudget
    ) -> None:
        self.cfg = cfg
        self.limits = limits
        self.f = findings
        self.budget = budget

    def _guard(
        self, what: str, pattern: str, wrap: tuple[str, str] = ("", "")
    ) -> re.Pattern[str] | None:
        """The compiled wrapped pattern, or None after reporting why it is refused."""
        problem = regex_problem(pattern, self.limits, wrap=wrap)
        if problem is not None:
            self.f.error(
                "unsafe_regex",
                f"{what} {pattern[:80]!r} is refused: {problem}. Use plain module names or a "
                "simpler pattern.",
            )
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(wrap[0] + pattern + wrap[1])  # parsed above: cannot fail

    def check(self) -> Targeting | None:
        """Config checks beyond parse_adapter_config; None when targets cannot be decided."""
        cfg, raw, f, limits = self.cfg, self.cfg.raw, self.f, self.limits
        ok = True
        for where, rank in [
            ("r", cfg.r),
            *((f"rank_pattern[{k!r}]", v) for k, v in cfg.rank_pattern.items()),
        ]:
            if rank > limits.max_rank:
                f.error(
                    "rank_too_large",
                    f"{where} is {rank}; Strata accepts ranks up to {limits.max_rank}.",
                )
        for option, why in _UNSUPPORTED_OPTIONS.items():
            if raw.get(option) not in _UNSET:
                f.error(
                    "unsupported_config_option",
                    f"adapter_config.json sets {option}; Strata cannot accept it because {why}.",
                )
        init = raw.get("init_lora_weights", True)
        if isinstance(init, str) and init.lower().startswith(_BASE_MUTATING_INITS):
            f.error(
                "base_mutating_init",
                f"init_lora_weights is {init!r:.40}: that initialization rewrites the base "
                "weights, so the adapter only works on the rewritten base. Save it with "
                "path_initial_model_for_weight_conversion to get a plain LoRA and upload that.",
            )
        elif isinstance(init, str) and init.lower() == "loftq":
            f.warning(
                "loftq_init",
                "init_lora_weights is 'loftq': the adapter was fitted to a quantized base and "
                "is only approximately right on the full-precision base.",
            )
        if cfg.use_dora:
            # A warning, not an error: PEFT loads and applies DoRA adapters fine, so they are
            # worth publishing. But DoRA's update rescales by ||W + BA|| per column, which
            # needs the base values; Strata's merge and vLLM do not implement it.
            f.warning(
                "dora_merge_unsupported",
                "use_dora is set: PEFT can load this adapter, but Strata cannot merge it into "
                "the base and vLLM cannot serve it.",
            )
        for key in (*cfg.rank_pattern, *cfg.alpha_pattern):
            ok &= self._guard("A rank_pattern/alpha_pattern key", key, _KEY_WRAP) is not None

        t = Targeting(self.budget, saved=cfg.modules_to_save)
        target = cfg.target_modules
        if not target:
            f.error(
                "missing_target_modules",
                "adapter_config.json has no target_modules, so it cannot say which base "
                "modules the LoRA tensors belong to.",
            )
            ok = False
        elif target == "all-linear":
            t.all_linear = True
        elif isinstance(target, str):
            t.regex = self._guard("target_modules", target)
            ok &= t.regex is not None
        else:
            bad = [x for x in target if not x or len(x) > limits.max_module_name_length]
            if bad:
                f.error(
                    "bad_target_modules",
                    "target_modules entries must be non-empty module names of at most "
                    f"{limits.max_module_name_length} characters.",
                )
                ok = False
            t.names = frozenset(target)

        exclude = raw.get("exclude_modules")
        if isinstance(exclude, str) and exclude:
            t.exclude_regex = self._guard("exclude_modules", exclude)
            ok &= t.exclude_regex is not None
        elif isinstance(exclude, list) and all(isinstance(x, str) for x in exclude):
            t.exclude_names = frozenset(exclude)
        elif exclude is not None:
            ok &= self._bad_value("exclude_modules", "a regex string or a list of names")

        layers = raw.get("layers_to_transform")
        if type(layers) is int:
            t.layers = frozenset({layers})
        elif isinstance(layers, list) and layers and all(type(x) is int for x in layers):
            t.layers = frozenset(layers)
        elif layers not in (None, []):
            ok &= self._bad_value("layers_to_transform", "an integer or a list of integers")
        pattern = raw.get("layers_pattern")
        patterns = [pattern] if isinstance(pattern, str) and pattern else pattern or []
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            ok &= self._bad_value("layers_pattern", "a string or a list of strings")
        else:
            for p in patterns:
                guarded = self._guard("layers_pattern", p, _LAYERS_WRAP)
                if guarded is None:
                    ok = False
                else:
                    t.layer_res.append(guarded)
        return t if ok else None

    def _bad_value(self, option: str, expected: str) -> bool:
        self.f.error("bad_config_value", f"{option} must be {expected}.")
        return False
