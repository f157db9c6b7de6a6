from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("hub.api.urls")),
    path("hf/", include("hub.hfcompat.urls")),
    path("", include("hub.web.urls")),
]
