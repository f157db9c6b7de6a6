"""Reads: resolving revisions, listing versions and files, searching repositories."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from hub.accounts.models import Namespace, Role
from hub.registry.access import Actor, repositories_visible_to, repository_for, role_in
from hub.registry.errors import NotFound
from hub.registry.lookups import version_lookup
from hub.registry.models import Alias, Job, Repository, Version, VersionFile
from hub.registry.names import is_commit_id, is_version_label, version_label_parts

# --- Who may see invalid versions ----------------------------------------------------


def writable_namespace_ids(actor: Actor) -> QuerySet[Namespace, Any] | None:
    """Namespaces where the actor holds write or admin; None means every one (site admin).

    The set-based twin of :func:`can_see_invalid` (which answers for one repository).
    """
    if actor.is_site_admin:
        return None
    if actor.user is None:
        return Namespace.objects.none().values("pk")
    return (
        Namespace.objects.filter(
            Q(user=actor.user)
            | Q(
                memberships__user=actor.user,
                memberships__role__in=[Role.WRITE, Role.ADMIN],
            )
        )
        .values("pk")
        .distinct()
    )


def versions_visible_q(actor: Actor, prefix: str = "") -> Q:
    """A filter on Version (through ``prefix``) hiding invalid versions from readers."""
    writable = writable_namespace_ids(actor)
    if writable is None:
        return Q()
    not_invalid = ~Q(**{f"{prefix}status": Version.Status.INVALID})
    return not_invalid | Q(**{f"{prefix}repository__namespace__in": writable})


def version_resolve(repository: Repository, revision: str) -> Version:
    """A version by label (``v3``, ``v3-merged``), commit id or alias."""
    versions = Version.objects.filter(repository=repository)
    version: Version | None
    if is_version_label(revision):
        number, variant = version_label_parts(revision)
        version = versions.filter(number=number, variant=variant).first()
    elif is_commit_id(revision):
        version = versions.filter(commit_id=revision).first()
    else:
        alias = Alias.objects.filter(repository=repository, name=revision).select_related("version")
        found = alias.first()
        version = found.version if found else None
    if version is None:
        raise NotFound(
            "revision_not_found",
            f"Revision {revision!r} of {repository.full_name} was not found.",
        )
    return version


def can_see_invalid(actor: Actor, repository: Repository) -> bool:
    """Invalid versions stay visible, with their report, to people who can write the repo."""
    role = role_in(actor, repository.namespace)
    return role is not None and Role.rank(role) >= Role.rank(Role.WRITE)


def version_for(actor: Actor, repository: Repository, revision: str) -> Version:
    version = version_resolve(repository, revision)
    if version.status == Version.Status.INVALID and not can_see_invalid(actor, repository):
        raise NotFound(
            "revision_not_found",
            f"Revision {revision!r} of {repository.full_name} was not found.",
        )
    return version


def readable_version(
    actor: Actor, namespace: str, name: str, revision: str
) -> tuple[Repository, Version]:
    """``namespace/name`` at ``revision`` as the actor may read it, else :class:`NotFound`.

    One statement for the usual case (:func:`lookups.version_lookup`); the ORM path
    answers the rest and words the error (missing repository or missing revision).
    """
    found = version_lookup(actor, namespace, name, revision)
    if found is not None:
        return found
    repository = repository_for(actor, namespace, name)
    return repository, version_for(actor, repository, revision)


def versions_for(actor: Actor, repository: Repository) -> QuerySet[Version]:
    versions = Version.objects.filter(repository=repository).order_by("-number", "variant")
    if not can_see_invalid(actor, repository):
        versions = versions.exclude(status=Version.Status.INVALID)
    return versions


def version_file(version: Version, path: str) -> VersionFile:
    found = version.files.select_related("blob").filter(path=path).first()
    if found is None:
        raise NotFound("entry_not_found", f"{path} is not in {version.label}.")
    return found


def repositories_search(
    visible: QuerySet[Repository],
    *,
    kind: str | None = None,
    base: str | None = None,
    owner: str | None = None,
    tag: str | None = None,
    license: str | None = None,
    status: str | None = None,
    query: str | None = None,
) -> QuerySet[Repository]:
    """Filter visible repositories; the result prefetches what list views show."""
    from django.conf import settings
    from django.db.models import BooleanField, OuterRef, Prefetch, Q, Subquery
    from django.db.models.expressions import RawSQL

    repos = visible
    if kind:
        repos = repos.filter(kind=kind)
    if base:
        ns, _, name = base.partition("/")
        repos = repos.filter(base_repository__namespace__name=ns, base_repository__name=name)
    if owner:
        repos = repos.filter(namespace__name=owner)
    if license:
        repos = repos.filter(license__iexact=license)
    if tag:
        if settings.USES_POSTGRES:
            repos = repos.filter(tags__contains=[tag.lower()])
        else:  # SQLite has no JSON containment; match the quoted element instead.
            repos = repos.filter(tags__icontains=f'"{tag.lower()}"')
    if status:
        # The newest version's status: `main` only ever points at valid versions, so
        # filtering on it could never find a pending or invalid repository.
        newest = (
            Version.objects.filter(repository=OuterRef("pk"), variant="")
            .order_by("-number")
            .values("status")[:1]
        )
        repos = repos.annotate(newest_status=Subquery(newest)).filter(newest_status=status)
    if query:
        if settings.USES_POSTGRES:
            # search_vector is a stored column of migration 0007 (not a model field):
            # name weighted A, description B, 'english', with a GIN index. Unqualified,
            # since Django renames the table inside the subquery.
            matches_text = RawSQL(
                "search_vector @@ websearch_to_tsquery('english'::regconfig, %s)",
                [query],
                output_field=BooleanField(),
            )
            matching = Repository.objects.filter(
                Q(matches_text)
                | Q(name__icontains=query)  # served by the pg_trgm index of migration 0006
            )
            # As a semi-join (pk IN ...): the planner may then collect a selective query's
            # matches from both GIN indexes, or walk the listing order and test each row's
            # stored vector for a broad one (bench/load.py).
            repos = repos.filter(pk__in=matching.values("pk"))
        else:
            repos = repos.filter(Q(name__icontains=query) | Q(description__icontains=query))
    return repos.select_related("namespace", "base_repository__namespace").prefetch_related(
        Prefetch(
            "aliases",
            queryset=Alias.objects.filter(name=Alias.MAIN).select_related("version"),
            to_attr="main_aliases",
        )
    )


# --- Jobs -----------------------------------------------------------------------------


def jobs_visible_to(actor: Actor) -> QuerySet[Job]:
    """Jobs on versions the actor can see (invalid ones only with write access), plus the
    ones they requested, while they can still see that repository: a member removed from
    an organization keeps no window on its private jobs. The REST API and the web share it.
    """
    visible = repositories_visible_to(actor).values("pk")
    condition = Q(version__repository__in=visible) & versions_visible_q(actor, "version__")
    if actor.user is not None:
        # Jobs without a version are upload finalizations of their own pushes.
        condition |= Q(requested_by=actor.user) & (
            Q(version__isnull=True) | Q(version__repository__in=visible)
        )
    return Job.objects.filter(condition).select_related(
        "version__repository__namespace", "requested_by"
    )


def jobs_of_user(actor: Actor) -> QuerySet[Job]:
    """The actor's recent jobs: requested by them, or on versions they pushed."""
    if actor.user is None:
        return Job.objects.none()
    return (
        jobs_visible_to(actor)
        .filter(Q(requested_by=actor.user) | Q(version__created_by=actor.user))
        .defer("version__manifest", "version__report", "version__metadata")
        .order_by("-created_at")
    )
