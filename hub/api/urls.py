from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from hub.api import views_accounts as accounts
from hub.api import views_benchmarks as benchmarks
from hub.api import views_derived as derived
from hub.api import views_repos as repos
from hub.api import views_uploads as uploads
from hub.api import views_versions as versions
from hub.api.errors import not_found

NAME = r"(?P<namespace>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
REV = r"(?P<revision>[A-Za-z0-9._-]+)"

app_name = "api"
urlpatterns = [
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularRedocView.as_view(url_name="api:schema"), name="docs"),
    path("whoami", accounts.WhoAmIView.as_view(), name="whoami"),
    path("tokens", accounts.TokenListView.as_view(), name="tokens"),
    path("tokens/<int:token_id>", accounts.TokenDetailView.as_view(), name="token"),
    path("orgs", accounts.OrgListView.as_view(), name="orgs"),
    path("orgs/<str:org>/members", accounts.OrgMembersView.as_view(), name="org-members"),
    path(
        "orgs/<str:org>/members/<str:username>",
        accounts.OrgMemberDetailView.as_view(),
        name="org-member",
    ),
    path("jobs", accounts.JobListView.as_view(), name="jobs"),
    path("compose", derived.ComposeView.as_view(), name="compose"),
    path("compare", benchmarks.CompareView.as_view(), name="compare"),
    re_path(rf"^leaderboards/{NAME}$", benchmarks.LeaderboardView.as_view(), name="leaderboard"),
    path("jobs/<uuid:job_id>", accounts.JobDetailView.as_view(), name="job"),
    path("uploads/<uuid:session_id>", uploads.UploadDetailView.as_view(), name="upload"),
    path(
        "uploads/<uuid:session_id>/commit", uploads.UploadCommitView.as_view(), name="upload-commit"
    ),
    path("repos", repos.RepositoryListView.as_view(), name="repos"),
    re_path(rf"^repos/{NAME}/uploads$", uploads.UploadStartView.as_view(), name="uploads"),
    re_path(rf"^repos/{NAME}$", repos.RepositoryDetailView.as_view(), name="repo"),
    re_path(rf"^repos/{NAME}/versions$", versions.VersionListView.as_view(), name="versions"),
    re_path(
        rf"^repos/{NAME}/versions/{REV}$", versions.VersionDetailView.as_view(), name="version"
    ),
    re_path(
        rf"^repos/{NAME}/versions/{REV}/files$",
        versions.VersionFilesView.as_view(),
        name="files",
    ),
    re_path(
        rf"^repos/{NAME}/versions/{REV}/files/(?P<path>.+)$",
        versions.FileDownloadView.as_view(),
        name="file",
    ),
    re_path(
        rf"^repos/{NAME}/versions/{REV}/lineage$", versions.LineageView.as_view(), name="lineage"
    ),
    re_path(rf"^repos/{NAME}/versions/{REV}/merge$", derived.MergeView.as_view(), name="merge"),
    re_path(
        rf"^repos/{NAME}/versions/{REV}/benchmarks$",
        benchmarks.VersionBenchmarksView.as_view(),
        name="benchmarks",
    ),
    re_path(
        rf"^repos/{NAME}/versions/{REV}/benchmark$",
        benchmarks.BenchmarkRequestView.as_view(),
        name="benchmark",
    ),
    re_path(rf"^repos/{NAME}/aliases$", versions.AliasListView.as_view(), name="aliases"),
    re_path(
        rf"^repos/{NAME}/aliases/(?P<alias>[A-Za-z0-9._-]+)$",
        versions.AliasDetailView.as_view(),
        name="alias",
    ),
    # Last: whatever else is asked for under the API gets the API's JSON 404.
    re_path(r"", not_found, name="not-found"),
]
