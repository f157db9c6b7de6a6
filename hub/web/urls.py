"""Web routes. Fixed top-level paths come first; ``/{namespace}/...`` catches the rest.

Paths under ``/-/`` and ``/{namespace}/-/`` can never clash with a name: names start
with a letter or digit.
"""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from hub.web.views import account, compare, home, jobs, namespace, publish, repo, search, system

NS = r"(?P<namespace>[A-Za-z0-9][A-Za-z0-9._-]*)"
NAME = r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
REV = r"(?P<revision>[A-Za-z0-9][A-Za-z0-9._-]*)"

app_name = "web"
urlpatterns = [
    path("", home.home, name="home"),
    path("healthz", system.healthz, name="healthz"),
    re_path(
        r"^blobs/(?P<key>(?:uploads|multipart)/[A-Za-z0-9/_-]+)$",
        system.signed_blob_put,
        name="signed-blob",
    ),
    path("search", search.search, name="search"),
    path("models", search.search, name="models"),
    path("new", publish.new_repository, name="new"),
    path("-/complete", publish.complete, name="complete"),
    path("signup", account.signup, name="signup"),
    path(
        "login",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("logout", auth_views.LogoutView.as_view(next_page="/"), name="logout"),
    path("settings/tokens", account.tokens, name="tokens"),
    path("settings/tokens/<int:token_id>/revoke", account.token_revoke, name="token-revoke"),
    path("jobs", jobs.job_list, name="jobs"),
    path("jobs/<uuid:job_id>", jobs.job_detail, name="job"),
    re_path(rf"^{NS}$", namespace.namespace, name="namespace"),
    re_path(rf"^{NS}/-/members$", namespace.members, name="members"),
    re_path(rf"^{NS}/{NAME}$", repo.repository, name="repo"),
    re_path(rf"^{NS}/{NAME}/v/{REV}$", repo.repository, name="version"),
    re_path(rf"^{NS}/{NAME}/v/{REV}/lineage$", repo.lineage, name="lineage"),
    re_path(rf"^{NS}/{NAME}/upload$", publish.upload, name="upload"),
    re_path(rf"^{NS}/{NAME}/compare$", compare.compare, name="compare"),
    re_path(
        rf"^{NS}/{NAME}/compare/(?P<a>[A-Za-z0-9._-]+?)\.\.\.(?P<b>[A-Za-z0-9._-]+)$",
        compare.compare,
        name="compare-pair",
    ),
]
