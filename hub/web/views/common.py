"""What every page view shares: the actor, domain errors as pages, pagination."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hub.registry.access import Actor
from hub.registry.errors import DomainError, NotAuthenticated, NotFound, PermissionDenied

F = TypeVar("F", bound=Callable[..., HttpResponse])


def actor_of(request: HttpRequest) -> Actor:
    """The signed-in user as the domain sees them (sessions carry full write scope)."""
    return Actor.of(request.user)


def error_page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return render(
        request,
        "web/error.html",
        {"status": status, "title": title, "message": message},
        status=status,
    )


def not_found(request: HttpRequest, message: str = "") -> HttpResponse:
    return error_page(
        request,
        404,
        "Not found",
        message or "There is nothing here, or it is private and you cannot see it.",
    )


def domain_errors(view: F) -> F:
    """Show domain errors as pages: 404 (also for private things), 403, or the login page.

    A repository the visitor may not read is reported exactly like a missing one.
    """

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotAuthenticated:
            return redirect_to_login(request.get_full_path())
        except NotFound as exc:
            return not_found(request, exc.message)
        except PermissionDenied as exc:
            return error_page(request, 403, "Not allowed", exc.message)
        except DomainError as exc:
            return error_page(request, exc.status, "That did not work", exc.message)

    return wrapped  # type: ignore[return-value]


def paginate(request: HttpRequest, items: Any, per_page: int) -> Page[Any]:
    paginator = Paginator(items, per_page)
    try:
        return paginator.page(request.GET.get("page") or 1)
    except PageNotAnInteger:
        return paginator.page(1)
    except EmptyPage:
        return paginator.page(paginator.num_pages)
