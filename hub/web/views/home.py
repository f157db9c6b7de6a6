"""The home page: search, recent and most-downloaded adapters, base models."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hub.registry.access import repositories_visible_to
from hub.registry.models import Repository
from hub.web import queries
from hub.web.views.common import actor_of


def home(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    visible = repositories_visible_to(actor)
    adapters = queries.card_queryset(visible.filter(kind=Repository.Kind.ADAPTER))
    recent = list(adapters.order_by("-updated_at", "-pk")[:8])
    popular = list(adapters.filter(downloads__gt=0).order_by("-downloads", "-pk")[:6])
    # One round of card queries for both lists (a repository may appear in each).
    cards = {c.repo.pk: c for c in queries.repository_cards(actor, [*recent, *popular], visible)}
    bases = list(
        visible.filter(kind=Repository.Kind.BASE_MODEL)
        .select_related("namespace")
        .order_by("-downloads", "name")[:10]
    )
    counts = queries.adapter_counts(visible, [b.pk for b in bases])
    totals = {f.value: f.count for f in queries.facet_kind(visible)}
    return render(
        request,
        "web/home.html",
        {
            "recent": [cards[r.pk] for r in recent],
            "popular": [cards[r.pk] for r in popular],
            "bases": [(b, counts.get(b.pk, 0)) for b in bases],
            "totals": totals,
        },
    )
