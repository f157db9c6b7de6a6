"""Compare two versions: files, configuration, modules and ranks, per-module norms."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from hub.registry.access import repository_for
from hub.registry.lookups import version_files
from hub.registry.models import Repository, VersionFile
from hub.registry.selectors import version_for, versions_for
from hub.web import rendering, reports
from hub.web.views.common import actor_of, domain_errors


@dataclass(frozen=True)
class Row:
    key: str
    a: str
    b: str

    @property
    def changed(self) -> bool:
        return self.a != self.b


@dataclass(frozen=True)
class FileRow:
    path: str
    a: VersionFile | None
    b: VersionFile | None

    @property
    def change(self) -> str:
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        return "same" if self.a.blob_id == self.b.blob_id else "changed"


@dataclass
class ModuleRow:
    module: str
    rank_a: Any
    rank_b: Any
    norm_a: float | None
    norm_b: float | None
    #: The largest norm in the table, for the bars.
    scale: float = 0.0

    @property
    def delta(self) -> float | None:
        if self.norm_a is None or self.norm_b is None:
            return None
        return self.norm_b - self.norm_a

    @property
    def bar_a(self) -> int:
        return self._bar(self.norm_a)

    @property
    def bar_b(self) -> int:
        return self._bar(self.norm_b)

    def _bar(self, value: float | None) -> int:
        if value is None or not self.scale:
            return 0
        return max(1, round(100 * value / self.scale))


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def config_name(repo: Repository) -> str:
    return "adapter_config.json" if repo.kind == Repository.Kind.ADAPTER else "config.json"


def config_of(files: dict[str, VersionFile], name: str) -> tuple[dict[str, Any] | None, str]:
    vf = files.get(name)
    if vf is None:
        return None, f"This version has no {name}."
    return rendering.json_file(vf.blob)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def module_rows(report_a: Any, report_b: Any) -> tuple[list[ModuleRow], int]:
    rows_a, total_a = reports.module_stats(report_a)
    rows_b, total_b = reports.module_stats(report_b)
    by_a = {r.module: r for r in rows_a}
    by_b = {r.module: r for r in rows_b}
    out = []
    for module in sorted(by_a.keys() | by_b.keys()):
        a, b = by_a.get(module), by_b.get(module)
        out.append(
            ModuleRow(
                module=module,
                rank_a=a.rank if a else None,
                rank_b=b.rank if b else None,
                norm_a=_float(a.delta_norm) if a else None,
                norm_b=_float(b.delta_norm) if b else None,
            )
        )
    norms = [n for r in out for n in (r.norm_a, r.norm_b) if n is not None]
    scale = max(norms, default=0.0)
    for row in out:
        row.scale = scale
    return out, max(total_a, total_b)


@domain_errors
def compare(
    request: HttpRequest, namespace: str, name: str, a: str | None = None, b: str | None = None
) -> HttpResponse:
    actor = actor_of(request)
    repo = repository_for(actor, namespace, name)
    choices = list(
        versions_for(actor, repo)
        .filter(variant="")
        .only("id", "repository_id", "number", "variant", "status", "message")[:200]
    )
    a = a or request.GET.get("a") or None
    b = b or request.GET.get("b") or None
    if not (a and b):
        if len(choices) < 2:
            return render(request, "web/compare.html", {"repo": repo, "choices": choices})
        a = a or choices[1].label
        b = b or choices[0].label
        return HttpResponseRedirect(reverse("web:compare-pair", args=[namespace, name, a, b]))
    va = version_for(actor, repo, a)
    vb = version_for(actor, repo, b)
    files_a = {f.path: f for f in version_files(va)}
    files_b = {f.path: f for f in version_files(vb)}
    file_rows = [
        FileRow(path, files_a.get(path), files_b.get(path))
        for path in sorted(files_a.keys() | files_b.keys())
    ]
    cfg_name = config_name(repo)
    cfg_a, cfg_a_error = config_of(files_a, cfg_name)
    cfg_b, cfg_b_error = config_of(files_b, cfg_name)
    config_rows = []
    if cfg_a is not None or cfg_b is not None:
        keys = sorted((cfg_a or {}).keys() | (cfg_b or {}).keys())
        config_rows = [
            Row(k, _show((cfg_a or {}).get(k)), _show((cfg_b or {}).get(k))) for k in keys
        ]
    facts_a = {f.label: f.value for f in reports.fact_rows(repo.kind, reports.facts_of(va.report))}
    facts_b = {f.label: f.value for f in reports.fact_rows(repo.kind, reports.facts_of(vb.report))}
    labels = [*facts_a, *[k for k in facts_b if k not in facts_a]]
    fact_rows = [Row(k, facts_a.get(k, "—"), facts_b.get(k, "—")) for k in labels]
    modules, module_total = module_rows(va.report, vb.report)
    return render(
        request,
        "web/compare.html",
        {
            "repo": repo,
            "choices": choices,
            "a": va,
            "b": vb,
            "file_rows": file_rows,
            "config_name": cfg_name,
            "config_rows": config_rows,
            "config_changed": sum(1 for r in config_rows if r.changed),
            "config_errors": [e for e in (cfg_a_error, cfg_b_error) if e],
            "fact_rows": fact_rows,
            "modules": modules,
            "module_total": module_total,
            "missing_reports": [v for v in (va, vb) if not v.report],
            "same_version": va.pk == vb.pk,
        },
    )
