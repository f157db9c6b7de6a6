"""Who may see and change what. Every door finds repositories through here.

A repository the caller may not read is reported exactly like a missing one
(:class:`NotFound`), so private names never leak through error answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet

from hub.accounts.models import ApiToken, Membership, Namespace, Role
from hub.registry.errors import NotAuthenticated, NotFound, PermissionDenied
from hub.registry.models import Repository


@dataclass(frozen=True)
class Actor:
    """The caller: a user (or nobody) and what their credential allows."""

    user: User | None
    #: False for read-scoped tokens: they may read whatever the user can, write nothing.
    write_scope: bool = True

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(user=None, write_scope=False)

    @classmethod
    def of(cls, user: User | AnonymousUser | None, token: ApiToken | None = None) -> Actor:
        if user is None or not user.is_authenticated:
            return cls.anonymous()
        assert isinstance(user, User)
        return cls(user=user, write_scope=token is None or token.allows_write())

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None

    @property
    def is_site_admin(self) -> bool:
        return self.user is not None and self.user.is_superuser


def role_in(actor: Actor, namespace: Namespace) -> str | None:
    """The actor's role in a namespace: admin of their own, their membership role, or None."""
    if actor.user is None:
        return None
    if actor.is_site_admin or namespace.user_id == actor.user.pk:
        return Role.ADMIN
    membership = Membership.objects.filter(namespace=namespace, user=actor.user).first()
    return membership.role if membership else None


def readable_namespace_ids(actor: Actor) -> QuerySet[Namespace, Any]:
    if actor.user is None:
        return Namespace.objects.none()
    return Namespace.objects.filter(Q(user=actor.user) | Q(memberships__user=actor.user)).values(
        "pk"
    )


def repositories_visible_to(actor: Actor) -> QuerySet[Repository]:
    """Live repositories the actor may read: public ones plus private ones they belong to."""
    live = Repository.objects.filter(deleted_at__isnull=True)
    if actor.is_site_admin:
        return live
    if actor.user is None:
        return live.filter(visibility=Repository.Visibility.PUBLIC)
    return live.filter(
        Q(visibility=Repository.Visibility.PUBLIC) | Q(namespace__in=readable_namespace_ids(actor))
    )


class VisibleRepositories:
    """Which repositories the actor may read, asked about a few ids at a time.

    A page that only needs to know about its neighbours (lineage parents, eval sets)
    asks here instead of materializing :func:`repositories_visible_to`, which holds one
    id per repository on the hub. Answers are cached for the life of the object.
    """

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self._known: dict[int, bool] = {}

    def check(self, repository_ids: Iterable[int]) -> None:
        """Look up every id not asked about yet, in one query."""
        unknown = set(repository_ids) - self._known.keys()
        if not unknown:
            return
        visible = set(
            repositories_visible_to(self.actor).filter(pk__in=unknown).values_list("pk", flat=True)
        )
        self._known.update((pk, pk in visible) for pk in unknown)

    def __contains__(self, repository_id: object) -> bool:
        if not isinstance(repository_id, int):
            return False
        if repository_id not in self._known:
            self.check([repository_id])
        return self._known[repository_id]


def check_role(actor: Actor, repository: Repository, need: str) -> None:
    """Raise unless the actor holds ``need`` (read/write/admin) on the repository.

    Callers must first have found the repository through :func:`repository_for` or
    :func:`repositories_visible_to`, so a failure here may say 403 without leaking.
    """
    if need == Role.READ:
        return
    if actor.user is None:
        raise NotAuthenticated("auth_required", "Sign in or send a token to do this.")
    if not actor.write_scope:
        raise PermissionDenied("token_scope", "This token is read-only; create a write token.")
    role = role_in(actor, repository.namespace)
    if role is None or Role.rank(role) < Role.rank(need):
        raise PermissionDenied(
            "forbidden", f"You need the {need} role on {repository.namespace.name} to do this."
        )


def repository_for(actor: Actor, namespace: str, name: str, *, need: str = Role.READ) -> Repository:
    """The repository ``namespace/name`` if the actor may see it, checked for ``need``."""
    repository = (
        repositories_visible_to(actor)
        .select_related("namespace")
        .filter(namespace__name=namespace, name=name)
        .first()
    )
    if repository is None:
        raise NotFound("repo_not_found", f"Repository {namespace}/{name} was not found.")
    check_role(actor, repository, need)
    return repository


def namespace_for_write(actor: Actor, namespace: str) -> Namespace:
    """A namespace the actor may create repositories in."""
    if actor.user is None:
        raise NotAuthenticated("auth_required", "Sign in or send a token to do this.")
    if not actor.write_scope:
        raise PermissionDenied("token_scope", "This token is read-only; create a write token.")
    ns = Namespace.objects.filter(name=namespace).first()
    role = role_in(actor, ns) if ns else None
    if ns is None or role is None:
        raise NotFound("namespace_not_found", f"Namespace {namespace} was not found.")
    if Role.rank(role) < Role.rank(Role.WRITE):
        raise PermissionDenied("forbidden", f"You need the write role on {namespace}.")
    return ns
