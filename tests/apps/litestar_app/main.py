"""Litestar needs msgspec, which refuses subinterpreters: the capability runs it in a process."""

import os

import httpx
from litestar import Litestar, get


@get("/whoami")
async def whoami() -> dict:
    import _interpreters

    return {"app": "litestar", "pid": os.getpid(), "interpreter": _interpreters.get_current()[0]}


@get("/mesh")
async def mesh(target: str) -> dict:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://{target}/whoami")
    return {"status": reply.status_code, "body": reply.json()}


app = Litestar(route_handlers=[whoami, mesh])
