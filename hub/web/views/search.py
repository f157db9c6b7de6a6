"""Browse and search repositories, with facets, sorting and pages."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hub.registry.access import Actor, repositories_visible_to
from hub.registry.models import Repository
from hub.registry.selectors import repositories_search
from hub.web import queries
from hub.web.forms import SORTS, STATUSES, SearchForm
from hub.web.views.common import actor_of, paginate

PER_PAGE = 20
ORDERINGS = {
    "downloads": ("-downloads", "-updated_at", "-pk"),
    "recent": ("-updated_at", "-pk"),
    "name": ("namespace__name", "name", "pk"),
}


class Search:
    """The visible repositories that match a search, and its facets.

    Full-text, status and rank filters cost a tsvector or a JSON report per row; they
    are evaluated once into a list of ids that the page and every facet reuse. The cheap
    filters (kind, base, owner, tag, license) run in each query, so each facet can leave
    its own filter out and count what choosing another value would give.
    """

    def __init__(self, actor: Actor, visible: QuerySet[Repository], params: dict[str, Any]):
        self.visible = visible
        self.params = params
        base = params.get("base")
        ns, _, name = str(base or "").partition("/")
        # Filtering by a base the visitor cannot see would confirm that it exists.
        self.base_hidden = bool(base) and not visible.filter(namespace__name=ns, name=name).exists()
        self.scope = visible
        if params.get("q") or params.get("status") or "rank_min" in params or "rank_max" in params:
            narrowed = repositories_search(visible, query=params.get("q"))
            if params.get("status"):
                narrowed = queries.filter_status(actor, narrowed, params["status"])
            narrowed = queries.filter_rank(narrowed, params.get("rank_min"), params.get("rank_max"))
            ids = list(narrowed.order_by().values_list("pk", flat=True).distinct())
            self.scope = visible.filter(pk__in=queries.id_list(ids)) if ids else visible.none()

    def matching(self, *, skip: str | None = None) -> QuerySet[Repository]:
        """The matches, leaving out the ``skip`` facet's own filter."""

        def get(name: str) -> Any:
            return None if name == skip else self.params.get(name)

        if get("base") and self.base_hidden:
            return self.visible.none()
        return repositories_search(
            self.scope,
            kind=get("kind"),
            base=get("base"),
            owner=get("owner"),
            tag=get("tag"),
            license=get("license"),
        )


def link(request: HttpRequest, key: str, value: Any) -> str:
    """This page's query string with ``key`` set (or removed), back on page 1."""
    query = request.GET.copy()
    query.pop("page", None)
    if value is None:
        query.pop(key, None)
    else:
        query[key] = str(value)
    return "?" + query.urlencode() if query else "?"


def facet(
    request: HttpRequest, key: str, title: str, values: list[queries.FacetValue]
) -> dict[str, Any]:
    current = request.GET.get(key, "")
    return {
        "key": key,
        "title": title,
        "values": [
            {
                "label": v.label,
                "count": v.count,
                "active": v.value == current,
                "url": link(request, key, None if v.value == current else v.value),
            }
            for v in values
        ],
    }


def search(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    visible = repositories_visible_to(actor)
    form = SearchForm(request.GET)
    params = form.params()
    sort = params.get("sort") or "downloads"
    found = Search(actor, visible, params)
    results = queries.card_queryset(found.matching()).order_by(*ORDERINGS[sort])
    page = paginate(request, results, PER_PAGE)
    cards = queries.repository_cards(actor, page.object_list, visible)
    facets = [
        facet(
            request,
            "kind",
            "Kind",
            queries.facet_kind(found.matching(skip="kind")),
        ),
        facet(
            request,
            "base",
            "Base model",
            queries.facet_base(found.matching(skip="base"), visible),
        ),
        facet(request, "tag", "Tags", queries.facet_tag(found.matching(skip="tag"))),
        facet(
            request,
            "license",
            "License",
            queries.facet_license(found.matching(skip="license")),
        ),
        facet(
            request,
            "owner",
            "Owner",
            queries.facet_owner(found.matching(skip="owner")),
        ),
    ]
    active = [
        {
            "label": form.fields[name].label or name.capitalize(),
            "value": value,
            "remove": link(request, name, None),
        }
        for name, value in params.items()
        if name not in ("q", "sort")
    ]
    return render(
        request,
        "web/search.html",
        {
            "form": form,
            "params": params,
            "page": page,
            "cards": cards,
            "facets": facets,
            "active": active,
            "sort": sort,
            "sorts": SORTS,
            "statuses": [
                {
                    "value": v,
                    "label": label,
                    "active": params.get("status") == v,
                    "url": link(request, "status", None if params.get("status") == v else v),
                }
                for v, label in STATUSES
            ],
            "kinds": Repository.Kind.choices,
        },
    )
