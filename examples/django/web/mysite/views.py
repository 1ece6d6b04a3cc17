"""The entrypoint, a Django project (ASGI, because mysite/asgi.py exists).

    /            an HTML page (styled by /static/site.css once collected)
    /api/info    JSON about this worker
    /greet       calls the greeter application through the mesh
"""
import os

import httpx
from django.http import HttpResponse, JsonResponse

PAGE = """<!doctype html>
<title>Watt + Django</title>
<link rel="stylesheet" href="/static/site.css">
<h1>Hello from Django, inside Watt</h1>
<p>This page comes from a Django project running in {where}.</p>
<ul>
  <li><a href="/api/info">/api/info</a> — JSON about this worker</li>
  <li><a href="/greet?name=Ada">/greet?name=Ada</a> — a call to http://greeter.plt.local</li>
</ul>
"""


def where() -> str:
    try:
        import _interpreters

        interp = _interpreters.get_current()[0]
    except ImportError:
        interp = 0
    return f"subinterpreter {interp}" if interp else f"process {os.getpid()}"


def home(request):
    return HttpResponse(PAGE.format(where=where()))


def info(request):
    return JsonResponse({"framework": "django", "where": where(), "pid": os.getpid()})


def greet(request):
    with httpx.Client(timeout=10) as client:
        reply = client.get("http://greeter.plt.local/hello",
                           params={"name": request.GET.get("name", "world")})
    return JsonResponse({"via": "mesh", "greeter": reply.json()})
