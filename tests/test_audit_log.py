"""Security-relevant actions leave an audit trail."""

from __future__ import annotations

import pytest

from hub.accounts.models import AuditEvent
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db


def actions() -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in AuditEvent.objects.order_by("created_at", "pk")]


def test_tokens_visibility_deletion_and_membership_are_audited(api):
    alice, bob = make_user("alice"), make_user("bob")
    token = make_token(alice, "write")
    client = api(token)
    assert (
        client.post("/api/v1/repos", {"name": "lora", "kind": "adapter"}, format="json").status_code
        == 201
    )
    assert (
        client.patch(
            "/api/v1/repos/alice/lora", {"visibility": "private"}, format="json"
        ).status_code
        == 200
    )
    assert client.delete("/api/v1/repos/alice/lora").status_code == 204
    assert client.post("/api/v1/orgs", {"name": "acme"}, format="json").status_code == 201
    assert (
        client.put("/api/v1/orgs/acme/members/bob", {"role": "write"}, format="json").status_code
        == 200
    )
    assert client.delete("/api/v1/orgs/acme/members/bob").status_code == 204
    created = client.post("/api/v1/tokens", {"name": "ci", "scope": "read"}, format="json").json()
    assert client.delete(f"/api/v1/tokens/{created['id']}").status_code == 204

    assert [a for a, _ in actions()] == [
        "token_created",
        "visibility_changed",
        "repository_deleted",
        "organization_created",
        "membership_changed",
        "membership_removed",
        "token_created",
        "token_revoked",
    ]
    change = AuditEvent.objects.get(action="visibility_changed")
    assert (change.actor, change.target, change.detail) == (
        alice,
        "alice/lora",
        {"before": "public", "after": "private"},
    )
    assert AuditEvent.objects.get(action="membership_changed").target == "acme:bob"
    assert bob.pk  # bob never acted
    # The secret is never written to the log, only the public prefix.
    assert all(token not in str(e.detail) + e.target for e in AuditEvent.objects.all())
