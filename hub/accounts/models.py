"""Who can do what: namespaces (users and organizations), memberships and API tokens."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

NAME_MAX_LENGTH = 96


class Role(models.TextChoices):
    READ = "read", "read"
    WRITE = "write", "write"
    ADMIN = "admin", "admin"

    @classmethod
    def rank(cls, role: str) -> int:
        return {cls.READ: 1, cls.WRITE: 2, cls.ADMIN: 3}[cls(role)]


class Namespace(models.Model):
    """The owner part of ``namespace/name``: one per user, or an organization."""

    class Kind(models.TextChoices):
        USER = "user", "user"
        ORG = "org", "organization"

    name = models.CharField(max_length=NAME_MAX_LENGTH, unique=True)
    #: Case-folded, NFKC-normalised name: two namespaces may not share it (anti-spoofing).
    name_key = models.CharField(max_length=NAME_MAX_LENGTH, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="namespace",
    )
    display_name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind="user", user__isnull=False)
                | models.Q(kind="org", user__isnull=True),
                name="namespace_user_iff_user_kind",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in an organization namespace."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=8, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "user"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} @ {self.namespace}"


class ApiToken(models.Model):
    """A bearer token. Only its sha256 is stored; the secret is shown once at creation."""

    class Scope(models.TextChoices):
        READ = "read", "read"
        WRITE = "write", "write"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    #: The first characters of the secret, to help people recognise a token in lists.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def allows_write(self) -> bool:
        return self.scope == self.Scope.WRITE


class AuditEvent(models.Model):
    """A security-relevant action, kept for operators (see the admin)."""

    class Action(models.TextChoices):
        TOKEN_CREATED = "token_created", "token created"
        TOKEN_REVOKED = "token_revoked", "token revoked"
        VISIBILITY_CHANGED = "visibility_changed", "visibility changed"
        REPOSITORY_DELETED = "repository_deleted", "repository deleted"
        ORGANIZATION_CREATED = "organization_created", "organization created"
        MEMBERSHIP_CHANGED = "membership_changed", "membership changed"
        MEMBERSHIP_REMOVED = "membership_removed", "membership removed"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    #: What was acted on, by name (``namespace/name``, a token prefix, ``org:user``).
    target = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.target}"


def audit(actor: object, action: str, target: str, **detail: object) -> None:
    """Record a security-relevant action; ``actor`` is a user or None."""
    user_id = getattr(actor, "pk", None) if getattr(actor, "is_authenticated", False) else None
    AuditEvent.objects.create(actor_id=user_id, action=action, target=target[:300], detail=detail)
