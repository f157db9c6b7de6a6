"""Writes for accounts: namespaces, organizations, memberships and API tokens."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from hub.accounts.models import ApiToken, AuditEvent, Membership, Namespace, Role, audit
from hub.db_rows import columns, fetch, instance
from hub.registry.errors import BadRequest, Conflict, NotFound, PermissionDenied
from hub.registry.names import canonical_name, check_name

TOKEN_PREFIX = "strata_"  # noqa: S105 - a public marker, not a secret


def _name_taken(name: str) -> bool:
    # Names that differ only in case, width or '_' vs '-' would let one namespace pose
    # as another, so they count as taken.
    return Namespace.objects.filter(name_key=canonical_name(name)).exists()


def user_create(*, username: str, password: str, email: str = "") -> User:
    """Create a user and their namespace, atomically."""
    check_name(username, what="user")
    with transaction.atomic():
        if _name_taken(username) or User.objects.filter(username__iexact=username).exists():
            raise Conflict("name_taken", f"The name {username!r} is already taken.")
        user = User.objects.create_user(username=username, password=password, email=email)
        Namespace.objects.create(
            name=username, name_key=canonical_name(username), kind=Namespace.Kind.USER, user=user
        )
    return user


def user_namespace(user: AbstractBaseUser) -> Namespace:
    """The user's own namespace, created on first use for users made outside the hub."""
    ns, _ = Namespace.objects.get_or_create(
        user_id=user.pk,
        defaults={
            "name": user.get_username(),
            "name_key": canonical_name(user.get_username()),
            "kind": Namespace.Kind.USER,
        },
    )
    return ns


def organization_create(*, actor: User, name: str, display_name: str = "") -> Namespace:
    """Create an organization with ``actor`` as its first admin."""
    check_name(name, what="organization")
    try:
        with transaction.atomic():
            if _name_taken(name):
                raise Conflict("name_taken", f"The name {name!r} is already taken.")
            org = Namespace.objects.create(
                name=name,
                name_key=canonical_name(name),
                kind=Namespace.Kind.ORG,
                display_name=display_name,
            )
            Membership.objects.create(namespace=org, user=actor, role=Role.ADMIN)
            audit(actor, AuditEvent.Action.ORGANIZATION_CREATED, name)
    except IntegrityError as exc:
        raise Conflict("name_taken", f"The name {name!r} is already taken.") from exc
    return org


def _require_org_admin(actor: User, org: Namespace) -> None:
    if actor.is_superuser:
        return
    if not Membership.objects.filter(namespace=org, user=actor, role=Role.ADMIN).exists():
        raise PermissionDenied("not_org_admin", "Only organization admins can manage members.")


def membership_set(*, actor: User, org: Namespace, user: User, role: str) -> Membership:
    """Add a member or change their role (admins only)."""
    if org.kind != Namespace.Kind.ORG:
        raise BadRequest("not_an_organization", f"{org.name} is not an organization.")
    if role not in Role.values:
        raise BadRequest("invalid_role", f"Role must be one of {', '.join(Role.values)}.")
    _require_org_admin(actor, org)
    with transaction.atomic():
        membership, _ = Membership.objects.update_or_create(
            namespace=org, user=user, defaults={"role": role}
        )
        _ensure_an_admin_remains(org)
        audit(actor, AuditEvent.Action.MEMBERSHIP_CHANGED, f"{org.name}:{user.username}", role=role)
    return membership


def membership_remove(*, actor: User, org: Namespace, user: User) -> None:
    _require_org_admin(actor, org)
    with transaction.atomic():
        deleted, _ = Membership.objects.filter(namespace=org, user=user).delete()
        if not deleted:
            raise NotFound("member_not_found", f"{user.username} is not a member of {org.name}.")
        _ensure_an_admin_remains(org)
        audit(actor, AuditEvent.Action.MEMBERSHIP_REMOVED, f"{org.name}:{user.username}")


def _ensure_an_admin_remains(org: Namespace) -> None:
    if not Membership.objects.filter(namespace=org, role=Role.ADMIN).exists():
        raise Conflict("last_admin", "An organization must keep at least one admin.")


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    #: The secret, shown to the user once and never stored.
    secret: str


def token_digest(secret: str) -> str:
    # Tokens carry 256 bits of randomness, so a plain sha256 is enough: there is
    # nothing to brute-force that a slow hash would protect.
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(
    *, user: User, name: str, scope: str = ApiToken.Scope.READ, expires_at: datetime | None = None
) -> IssuedToken:
    if scope not in ApiToken.Scope.values:
        raise BadRequest("invalid_scope", "Token scope must be 'read' or 'write'.")
    if not name or len(name) > 100:
        raise BadRequest("invalid_token_name", "Token names must be 1 to 100 characters.")
    if expires_at is not None and expires_at <= timezone.now():
        raise BadRequest("invalid_expiry", "A token's expiry must be in the future.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        digest=token_digest(secret),
        scope=scope,
        expires_at=expires_at,
    )
    audit(user, AuditEvent.Action.TOKEN_CREATED, token.prefix, name=name, scope=scope)
    return IssuedToken(token=token, secret=secret)


def token_revoke(*, user: User, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise NotFound("token_not_found", "No such token.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit(user, AuditEvent.Action.TOKEN_REVOKED, token.prefix, name=token.name)
    return token


@functools.cache
def _token_select() -> str:
    return (
        f"SELECT {columns(ApiToken, 't')}, {columns(User, 'u')}"  # noqa: S608 - model columns
        f" FROM {ApiToken._meta.db_table} t JOIN {User._meta.db_table} u ON u.id = t.user_id"
        " WHERE t.digest = %s AND t.revoked_at IS NULL"
    )


def _token_with_user(digest: str) -> ApiToken | None:
    # Every authenticated request starts here: one statement, not the ORM's select_related
    # (which costs three times as much Python as the query itself; see hub/db_rows.py).
    rows = fetch(_token_select(), [digest])
    if not rows:
        return None
    row = rows[0]
    token, end = instance(ApiToken, row)
    token.user, _ = instance(User, row, end)
    return token


def token_authenticate(secret: str) -> ApiToken | None:
    """The active token for ``secret``, recording its use; None if unknown, expired or revoked."""
    token = _token_with_user(token_digest(secret))
    now = timezone.now()
    if token is None or not token.is_active(now) or not token.user.is_active:
        return None
    # Skip the write on hot paths: a minute's precision is plenty for "last used".
    stale = now - timedelta(seconds=60)
    if token.last_used_at is None or token.last_used_at < stale:
        _record_use(token, now, stale)
    return token


def _record_use(token: ApiToken, now: datetime, stale: datetime) -> None:
    # When the minute is up, every request in flight with this token sees it at once and
    # queues on the row lock behind the first writer: the condition in the UPDATE makes
    # the rest no-ops, and not waiting for the WAL flush makes the queue short (a lost
    # last-use time after a crash costs nothing).
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=token.pk
        ).update(last_used_at=now)
    token.last_used_at = now
