"""The entrypoint: answers `/` itself and calls the greeter over the mesh."""

import os

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def home(request):
    return PlainTextResponse("Hello from the gateway. Try /greet?name=you\n")


async def greet(request):
    name = request.query_params.get("name", "world")
    # No network here: greeter.plt.local is answered over an in-memory channel.
    async with httpx.AsyncClient(base_url="http://greeter.plt.local") as client:
        reply = await client.get("/hello", params={"name": name})
    return JSONResponse({"via": "mesh", "greeter": reply.json()})


async def whoami(request):
    import _interpreters

    return JSONResponse({"app": "gateway", "pid": os.getpid(),
                         "interpreter": _interpreters.get_current()[0]})


app = Starlette(routes=[Route("/", home), Route("/greet", greet), Route("/whoami", whoami)])
