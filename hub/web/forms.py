"""Forms for the web pages. They validate input; services decide what is allowed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation

from hub.accounts.models import ApiToken, Role
from hub.registry.models import Repository
from hub.registry.names import RESERVED_NAMESPACES

#: Sign-up refuses the names the domain reserves for the hub's own routes.
WEB_RESERVED_NAMES = RESERVED_NAMESPACES

SORTS = [("downloads", "Most downloads"), ("recent", "Recently updated"), ("name", "Name")]
STATUSES = [
    ("valid", "Valid"),
    ("pending", "Awaiting validation"),
    ("invalid", "Invalid (yours)"),
]


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    kind = forms.ChoiceField(required=False, choices=[("", "Any"), *Repository.Kind.choices])
    base = forms.CharField(required=False, max_length=200, label="Base model")
    tag = forms.CharField(required=False, max_length=50)
    license = forms.CharField(required=False, max_length=64)
    status = forms.ChoiceField(required=False, choices=[("", "Any"), *STATUSES])
    owner = forms.CharField(required=False, max_length=96)
    rank_min = forms.IntegerField(required=False, min_value=1, max_value=65536, label="Rank from")
    rank_max = forms.IntegerField(required=False, min_value=1, max_value=65536, label="Rank to")
    sort = forms.ChoiceField(required=False, choices=SORTS)

    def params(self) -> dict[str, Any]:
        """Cleaned values; invalid fields are dropped instead of failing the page."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            name: data.get(name)
            for name in self.fields
            if name not in self.errors and data.get(name) not in (None, "")
        }


class RepositoryCreateForm(forms.Form):
    namespace = forms.ChoiceField(label="Owner")
    name = forms.CharField(
        max_length=96,
        help_text="Letters, digits, '.', '_' and '-'. Names are permanent.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    kind = forms.ChoiceField(choices=Repository.Kind.choices, initial=Repository.Kind.ADAPTER)
    visibility = forms.ChoiceField(
        choices=Repository.Visibility.choices,
        initial=Repository.Visibility.PUBLIC,
        widget=forms.RadioSelect,
    )
    description = forms.CharField(
        required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 3})
    )
    license = forms.CharField(
        required=False,
        max_length=64,
        help_text="An SPDX id such as apache-2.0 or mit.",
    )
    tags = forms.CharField(
        required=False,
        max_length=1000,
        help_text="Comma-separated, e.g. instruction, dialogue.",
    )

    def __init__(self, *args: Any, namespaces: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["namespace"].choices = [(n, n) for n in namespaces]  # type: ignore[attr-defined]

    def clean_tags(self) -> list[str]:
        raw = self.cleaned_data.get("tags") or ""
        return [t.strip() for t in raw.split(",") if t.strip()]


class SignupForm(forms.Form):
    username = forms.CharField(
        max_length=96,
        help_text="Your namespace: letters, digits, '.', '_' and '-'.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "spellcheck": "false"}),
    )
    email = forms.EmailField(
        required=False, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters, not a common password.",
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_username(self) -> str:
        name: str = self.cleaned_data["username"].strip()
        if name.lower() in WEB_RESERVED_NAMES:
            raise forms.ValidationError("That name is reserved; choose another.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        one, two = data.get("password1"), data.get("password2")
        if one and two and one != two:
            self.add_error("password2", "The two passwords differ.")
        elif one:
            try:
                password_validation.validate_password(one)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Token name",
        help_text="Where you will use it, e.g. laptop or CI.",
    )
    scope = forms.ChoiceField(
        choices=ApiToken.Scope.choices,
        initial=ApiToken.Scope.READ,
        widget=forms.RadioSelect,
        help_text="Read tokens can pull; write tokens can also push.",
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        coerce=int,
        choices=[(0, "Never"), (7, "In 7 days"), (30, "In 30 days"), (90, "In 90 days")],
        initial=90,
    )


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)
