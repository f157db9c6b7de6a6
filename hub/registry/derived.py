"""Derived artifacts: pre-merged weights and composed adapters, requested as jobs.

A merge is keyed by (base revision, stack, dtype): asking again returns the published
``vN-merged`` version or the job already working on it, so ten simultaneous requests
make one job. Both kinds count against a per-user limit of active jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from hub.registry.access import Actor, repository_for
from hub.registry.errors import BadRequest, DomainError, NotAuthenticated
from hub.registry.jobs import job_request
from hub.registry.lineage import Ref, adapter_base, resolve_ref, stack_of
from hub.registry.models import (
    Blob,
    Job,
    LineageEdge,
    Repository,
    Version,
    VersionFile,
)

#: Output dtypes a merge can be asked for; None keeps each tensor's base dtype.
MERGE_DTYPES = ("f16", "bf16", "f32")


class TooManyJobs(DomainError):
    status = 429


def merged_variant(dtype: str | None) -> str:
    return "merged" if dtype is None else f"merged-{dtype}"


def merge_key(version: Version, dtype: str | None) -> str:
    """Identifies a merge by its inputs: the base revision, the stack in order, the dtype."""
    base = adapter_base(version)
    stack = ",".join(v.commit_id for v in stack_of(version))
    return f"merge:{base.commit_id if base else '-'}:{stack}:{dtype or 'base'}"


def check_job_limit(user: User | None) -> None:
    """Refuse a request that would exceed the user's limit of active expensive jobs."""
    if user is None:
        return
    active = Job.objects.filter(
        requested_by=user,
        kind__in=[Job.Kind.MERGE, Job.Kind.COMPOSE, Job.Kind.BENCHMARK],
        state__in=Job.ACTIVE_STATES,
    ).count()
    if active >= settings.MAX_ACTIVE_JOBS_PER_USER:
        raise TooManyJobs(
            "job_limit",
            f"You already have {active} merge, compose or benchmark jobs queued or running; "
            "wait for one to finish.",
        )


@dataclass(frozen=True)
class MergeOutcome:
    job: Job | None
    merged: Version | None


def merge_request(
    *, actor: Actor | None, version: Version, dtype: str | None = None
) -> MergeOutcome:
    """Ask for the pre-merged weights of an adapter version (anyone who can read it)."""
    if dtype is not None and dtype not in MERGE_DTYPES:
        raise BadRequest("invalid_dtype", f"dtype must be one of {', '.join(MERGE_DTYPES)}.")
    if version.repository.kind != Repository.Kind.ADAPTER or version.variant:
        raise BadRequest("not_an_adapter", "Only adapter versions can be merged.")
    if version.status != Version.Status.VALID:
        raise BadRequest(
            "version_not_valid",
            f"{version.label} is {version.status}; only versions that passed validation merge.",
        )
    merged = Version.objects.filter(
        repository=version.repository, number=version.number, variant=merged_variant(dtype)
    ).first()
    if merged is not None:
        return MergeOutcome(job=None, merged=merged)
    user = actor.user if actor is not None else None
    with transaction.atomic():
        key = merge_key(version, dtype)
        existing = Job.objects.filter(
            dedupe_key=key, state__in=[*Job.ACTIVE_STATES, Job.State.SUCCEEDED]
        ).first()
        if existing is not None:
            return MergeOutcome(job=existing, merged=None)
        check_job_limit(user)
        job, _ = job_request(
            kind=Job.Kind.MERGE,
            version=version,
            params={"dtype": dtype},
            dedupe_key=key,
            requested_by=user,
        )
    return MergeOutcome(job=job, merged=None)


def auto_merge_wanted(version: Version) -> bool:
    """Merge policy: automatic merges are switched on per repository or per base model."""
    repo = version.repository
    if repo.auto_merge:
        return True
    base = adapter_base(version)
    return base is not None and base.repository.auto_merge


def merged_version_publish(
    *,
    adapter: Version,
    dtype: str | None,
    files: list[tuple[str, Blob]],
    report: dict[str, Any],
) -> Version:
    """Publish merged weights as revision ``vN-merged`` with lineage to the base and stack."""
    import hashlib
    import json

    base = adapter_base(adapter)
    stack = stack_of(adapter)
    variant = merged_variant(dtype)
    with transaction.atomic():
        existing = Version.objects.filter(
            repository=adapter.repository, number=adapter.number, variant=variant
        ).first()
        if existing is not None:
            return existing
        manifest = {
            "merged_from": adapter.commit_id,
            "variant": variant,
            "files": sorted((p, b.sha256) for p, b in files),
        }
        commit_id = hashlib.sha1(
            json.dumps(manifest, sort_keys=True).encode(), usedforsecurity=False
        ).hexdigest()
        merged = Version.objects.create(
            repository=adapter.repository,
            number=adapter.number,
            variant=variant,
            commit_id=commit_id,
            status=Version.Status.VALID,
            message=f"Pre-merged weights of {adapter.label}",
            metadata={"dtype": dtype or "base", "merged_at": timezone.now().isoformat()},
            report=report,
            total_size=sum(b.size for _, b in files),
        )
        VersionFile.objects.bulk_create(
            VersionFile(version=merged, path=p, blob=b) for p, b in files
        )
        edges = [LineageEdge(child=merged, parent=adapter, kind=LineageEdge.Kind.MERGED_FROM)]
        if base is not None:
            edges.append(LineageEdge(child=merged, parent=base, kind=LineageEdge.Kind.ADAPTER_OF))
        edges += [
            LineageEdge(child=merged, parent=v, kind=LineageEdge.Kind.STACKED_ON, position=i)
            for i, v in enumerate(stack[:-1])
        ]
        LineageEdge.objects.bulk_create(edges)
    return merged


@dataclass(frozen=True)
class ComposeInput:
    ref: Ref
    weight: float = 1.0


def compose_request(
    *,
    actor: Actor,
    inputs: list[ComposeInput],
    method: str,
    rank: int | None,
    target: str,
    message: str = "",
) -> Job:
    """Ask for one adapter equivalent to (or approximating) a weighted set of adapters.

    The inputs must share a base. The result is pushed as a new version of ``target``
    (which the actor must be able to write) with ``composed_from`` lineage, and is
    validated like any upload.
    """
    if actor.user is None:
        raise NotAuthenticated("auth_required", "Sign in or send a token to do this.")
    if method not in ("exact", "svd"):
        raise BadRequest("invalid_method", "method must be 'exact' or 'svd'.")
    if method == "svd" and (rank is None or rank < 1):
        raise BadRequest("invalid_rank", "The svd method needs a target rank of at least 1.")
    if not 1 <= len(inputs) <= 16:
        raise BadRequest("invalid_inputs", "Compose takes 1 to 16 adapters.")
    versions = [
        resolve_ref(actor, i.ref, kind=Repository.Kind.ADAPTER, what="adapter") for i in inputs
    ]
    bases = {b.pk if (b := adapter_base(v)) else None for v in versions}
    if len(bases) != 1 or None in bases:
        raise BadRequest(
            "compose_base_mismatch", "Every adapter composed together must share one base revision."
        )
    for v in versions:
        if v.status != Version.Status.VALID:
            raise BadRequest(
                "version_not_valid", f"{v.repository.full_name}@{v.label} is not valid."
            )
    namespace, _, name = target.partition("/")
    target_repo = repository_for(actor, namespace, name, need="write")
    if target_repo.kind != Repository.Kind.ADAPTER:
        raise BadRequest("not_an_adapter", f"{target} is not an adapter repository.")
    with transaction.atomic():
        check_job_limit(actor.user)
        job, _ = job_request(
            kind=Job.Kind.COMPOSE,
            version=versions[-1],
            params={
                "inputs": [
                    {"version": v.pk, "weight": i.weight}
                    for v, i in zip(versions, inputs, strict=True)
                ],
                "method": method,
                "rank": rank,
                "target": target_repo.pk,
                "message": message[:5000],
            },
            requested_by=actor.user,
        )
    return job
