"""The WSGI application gunicorn serves (``gunicorn hub.wsgi``)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
application = get_wsgi_application()

# Import every view now rather than on the first requests, then take everything alive
# at start-up out of the cyclic collector's sight: those objects live as long as the
# process, and a full collection that walks them all stalled requests for 20-40 ms.
get_resolver().url_patterns  # noqa: B018 - loads the URLconf and every view module
gc.freeze()
