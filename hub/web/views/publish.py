"""Publish from the browser: create a repository, then upload a folder into it.

The upload itself runs in the browser (static/web/publish.js) against the REST upload
session API with the session cookie and the CSRF token; these views render the forms
and answer the small autocomplete lookups the page makes.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from hub.accounts.models import Role
from hub.accounts.services import user_namespace
from hub.registry import services
from hub.registry.access import repositories_visible_to, repository_for
from hub.registry.errors import DomainError
from hub.registry.models import Repository
from hub.web import queries
from hub.web.forms import RepositoryCreateForm
from hub.web.views.common import actor_of, domain_errors

_FIELD_OF_CODE = {
    "invalid_name": "name",
    "repo_exists": "name",
    "name_tombstoned": "name",
    "invalid_tags": "tags",
    "namespace_not_found": "namespace",
    "forbidden": "namespace",
}


@login_required
def new_repository(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    assert actor.user is not None
    user_namespace(actor.user)  # users made outside the hub get theirs on first use
    namespaces = [ns.name for ns in queries.namespaces_writable_by(actor)]
    initial = {"namespace": request.GET.get("namespace") or actor.user.username}
    if request.GET.get("kind") in Repository.Kind.values:
        initial["kind"] = request.GET["kind"]
    form = RepositoryCreateForm(request.POST or None, namespaces=namespaces, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            repo = services.repository_create(
                actor=actor,
                namespace=data["namespace"],
                name=data["name"].strip(),
                kind=data["kind"],
                visibility=data["visibility"],
                description=data["description"],
                license=data["license"].strip(),
                tags=data["tags"],
            )
        except DomainError as exc:
            form.add_error(_FIELD_OF_CODE.get(exc.code), exc.message)
        else:
            return HttpResponseRedirect(
                reverse("web:upload", args=[repo.namespace.name, repo.name])
            )
    return render(request, "web/new.html", {"form": form})


@login_required
@domain_errors
def upload(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    actor = actor_of(request)
    repo = repository_for(actor, namespace, name, need=Role.WRITE)
    return render(request, "web/upload.html", {"repo": repo})


@require_GET
def complete(request: HttpRequest) -> JsonResponse:
    """Repositories for an autocomplete: only ones the visitor can see, never private ones
    of others. ``kind`` is base_model (the default), adapter or dataset."""
    kind = request.GET.get("kind") or Repository.Kind.BASE_MODEL
    if kind not in Repository.Kind.values:
        return JsonResponse({"error": "unknown kind"}, status=400)
    visible = repositories_visible_to(actor_of(request))
    results = queries.complete_repositories(
        visible, kind=kind, text=(request.GET.get("q") or "")[:200]
    )
    response = JsonResponse({"results": results})
    response["Cache-Control"] = "private, no-store"
    return response
