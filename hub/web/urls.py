from django.urls import path, re_path

from hub.web import views

app_name = "web"
urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    re_path(
        r"^blobs/(?P<key>(?:uploads|multipart)/[A-Za-z0-9/_-]+)$",
        views.signed_blob_put,
        name="signed-blob",
    ),
]
