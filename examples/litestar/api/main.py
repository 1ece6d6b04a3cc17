"""The entrypoint, a Litestar app: it runs in a child process (msgspec cannot load in
a subinterpreter) and calls the inventory application through the mesh.

    /                 what to try
    /stock/{item}     asks http://inventory.plt.local/items/{item}
"""

import os

import httpx
from litestar import Litestar, get
from litestar.exceptions import NotFoundException


@get("/")
async def home() -> dict:
    return {"app": "api", "try": ["/stock/teapot", "/schema/openapi.json"]}


@get("/stock/{item:str}")
async def stock(item: str) -> dict:
    # No network: inventory.plt.local is answered over an in-memory channel.
    async with httpx.AsyncClient(base_url="http://inventory.plt.local") as client:
        reply = await client.get(f"/items/{item}")
    if reply.status_code == 404:
        raise NotFoundException(f"no item {item}")
    return {"via": "mesh", "api_pid": os.getpid(), "inventory": reply.json()}


app = Litestar(route_handlers=[home, stock])
