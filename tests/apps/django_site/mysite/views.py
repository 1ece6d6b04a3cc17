"""Views the tests call: where the request ran, and a mesh call to another app."""
import os

import httpx
from django.http import JsonResponse
from django.utils import timezone


def whoami(request):
    try:
        import _interpreters

        interpreter = int(_interpreters.get_current()[0])
    except Exception:  # noqa: BLE001
        interpreter = 0
    return JsonResponse({"app": "django", "pid": os.getpid(), "interpreter": interpreter,
                         "host": request.get_host(),
                         "settings": os.environ.get("DJANGO_SETTINGS_MODULE"),
                         "handler": type(request).__name__,
                         "time_zone": timezone.get_current_timezone_name()})


def mesh(request):
    """GET /mesh?to=<id>: the other application's /whoami, through the mesh."""
    with httpx.Client(timeout=30) as client:
        reply = client.get(f"http://{request.GET['to']}.plt.local/whoami")
    return JsonResponse({"status": reply.status_code, "body": reply.json()})
