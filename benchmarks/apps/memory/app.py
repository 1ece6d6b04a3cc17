"""Starlette app of the memory scenario: what a small real service imports and holds.

A few routes, JSON and text, so each worker has a framework loaded, not only Watt's
own worker code (the trivial app of benchmarks/apps/trivial measures that floor).
"""

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def home(request):
    return PlainTextResponse("hello, world")


async def item(request):
    return JSONResponse({"id": request.path_params["id"], "tags": ["a", "b"]})


app = Starlette(routes=[Route("/", home), Route("/items/{id:int}", item)])
