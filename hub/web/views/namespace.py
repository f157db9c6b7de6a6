"""Namespace pages: a user's or organization's repositories; members for organizations."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hub.accounts import services as accounts
from hub.accounts.models import Namespace
from hub.registry.access import repositories_visible_to
from hub.registry.errors import DomainError, NotAuthenticated, NotFound, PermissionDenied
from hub.web import queries
from hub.web.forms import MemberForm
from hub.web.views.common import actor_of, domain_errors, paginate

PER_PAGE = 24


def namespace_or_404(name: str) -> Namespace:
    ns = Namespace.objects.filter(name=name).first()
    if ns is None:
        raise NotFound("namespace_not_found", f"There is no user or organization {name}.")
    return ns


@domain_errors
def namespace(request: HttpRequest, namespace: str) -> HttpResponse:
    actor = actor_of(request)
    ns = namespace_or_404(namespace)
    visible = repositories_visible_to(actor)
    repos = queries.card_queryset(visible.filter(namespace=ns)).order_by("-updated_at", "-pk")
    page = paginate(request, repos, PER_PAGE)
    is_org = ns.kind == Namespace.Kind.ORG
    return render(
        request,
        "web/namespace.html",
        {
            "ns": ns,
            "is_org": is_org,
            "page": page,
            "cards": queries.repository_cards(actor, page.object_list, visible),
            "members": queries.members_of(ns) if is_org else [],
            "is_admin": queries.is_org_admin(actor, ns),
            "member_form": MemberForm(),
        },
    )


@require_POST
@domain_errors
def members(request: HttpRequest, namespace: str) -> HttpResponse:
    """Add, change or remove a member (organization admins; the services check)."""
    actor = actor_of(request)
    if actor.user is None:
        raise NotAuthenticated("auth_required", "Sign in to manage members.")
    org = namespace_or_404(namespace)
    if org.kind != Namespace.Kind.ORG:
        raise NotFound("namespace_not_found", f"{namespace} is not an organization.")
    if not queries.is_org_admin(actor, org):
        raise PermissionDenied("not_org_admin", "Only organization admins can manage members.")
    back = HttpResponseRedirect(reverse("web:namespace", args=[org.name]) + "#members")
    form = MemberForm(request.POST)
    action = request.POST.get("action", "set")
    if action == "remove":
        form.fields["role"].required = False
    if not form.is_valid():
        messages.error(request, "Give a username and a role.")
        return back
    username = form.cleaned_data["username"].strip()
    member = User.objects.filter(username=username).first()
    if member is None:
        messages.error(request, f"There is no user {username}.")
        return back
    try:
        if action == "remove":
            accounts.membership_remove(actor=actor.user, org=org, user=member)
            messages.success(request, f"{member.username} is no longer a member of {org.name}.")
        else:
            role = form.cleaned_data["role"]
            accounts.membership_set(actor=actor.user, org=org, user=member, role=role)
            messages.success(request, f"{member.username} is now {role} in {org.name}.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return back
