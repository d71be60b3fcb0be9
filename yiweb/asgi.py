"""ASGI entry point: Django for HTTP, Channels for the chat websocket (served by Daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yiweb.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from chat.origin import SameOriginValidator  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from yiweb.request_threads import RequestThreads  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Each request's sync code on a kept thread, not one started and joined on the
        # event loop per request: yiweb.request_threads.
        "http": RequestThreads(django_asgi_app),
        # The Origin check stops another site's page from opening a socket with the
        # user's cookies (cross-site websocket hijacking): chat.origin.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
