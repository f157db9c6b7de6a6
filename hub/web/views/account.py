"""Accounts: sign up (login and logout are Django's views) and API tokens."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from hub.accounts import services as accounts
from hub.registry.errors import DomainError
from hub.web.forms import SignupForm, TokenCreateForm


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/"


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return HttpResponseRedirect("/")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = accounts.user_create(
                username=data["username"], password=data["password1"], email=data["email"]
            )
        except DomainError as exc:
            form.add_error("username", exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome, {user.username}. Your namespace is ready.")
            return HttpResponseRedirect(_safe_next(request))
    return render(request, "web/signup.html", {"form": form, "next": _safe_next(request)})


def _tokens_page(
    request: HttpRequest, user: User, form: TokenCreateForm, secret: str = ""
) -> HttpResponse:
    tokens = user.api_tokens.order_by("revoked_at", "-created_at")
    now = timezone.now()
    return render(
        request,
        "web/tokens.html",
        {"tokens": tokens, "form": form, "secret": secret, "now": now},
    )


@never_cache
@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in_days"]
        try:
            issued = accounts.token_create(
                user=user,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except DomainError as exc:
            form.add_error("name", exc.message)
        else:
            # The secret is shown in this answer only (never stored, never redirected;
            # never_cache keeps it out of caches).
            return _tokens_page(request, user, TokenCreateForm(), secret=issued.secret)
    return _tokens_page(request, user, form)


@require_POST
@login_required
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    try:
        token = accounts.token_revoke(user=user, token_id=token_id)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token {token.name} is revoked.")
    return HttpResponseRedirect(reverse("web:tokens"))
