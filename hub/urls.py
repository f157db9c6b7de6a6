from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("hub.api.urls")),
    path("hf/", include("hub.hfcompat.urls")),
    path("", include("hub.web.urls")),
]

# Database and storage outages answer 503 with Retry-After on every page, not a bare 500.
handler500 = "hub.web.views.errors.server_error"
