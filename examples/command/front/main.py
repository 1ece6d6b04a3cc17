"""The entrypoint: a Starlette app that calls the `clock` program through the mesh."""

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def home(request):
    return PlainTextResponse("Try /now: the time comes from a separate program.\n")


async def now(request):
    # clock.plt.local is answered over an in-memory channel by the `command` worker,
    # which forwards to the program on its own 127.0.0.1 port.
    async with httpx.AsyncClient(base_url="http://clock.plt.local") as client:
        reply = await client.get("/time")
    return JSONResponse({"via": "mesh", "status": reply.status_code, "clock": reply.json()})


app = Starlette(routes=[Route("/", home), Route("/now", now)])
