"""The entrypoint, a Quart app (in a subinterpreter under `auto`).

    /            a page saying where it runs
    /greet       calls the greeter application through the mesh
"""

import os

import httpx
from quart import Quart, request

app = Quart(__name__)


def where() -> str:
    import _interpreters

    interp = _interpreters.get_current()[0]
    return f"subinterpreter {interp}" if interp else f"process {os.getpid()}"


@app.get("/")
async def home():
    return f"Hello from Quart, inside Watt ({where()}). Try /greet?name=Ada\n"


@app.get("/greet")
async def greet():
    # No network: greeter.plt.local is answered over an in-memory channel.
    async with httpx.AsyncClient(base_url="http://greeter.plt.local") as client:
        reply = await client.get("/hello", params={"name": request.args.get("name", "world")})
    return {"via": "mesh", "greeter": reply.json()}
