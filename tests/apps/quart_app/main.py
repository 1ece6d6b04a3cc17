"""Quart loads in a subinterpreter: the capability keeps it there under `auto`."""

import asyncio
import os

import httpx
from quart import Quart, request

app = Quart(__name__)


@app.get("/whoami")
async def whoami():
    import _interpreters

    return {"app": "quart", "pid": os.getpid(), "interpreter": _interpreters.get_current()[0]}


@app.get("/mesh")
async def mesh():
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://{request.args['target']}/whoami")
    return {"status": reply.status_code, "body": reply.json()}


@app.get("/tasks")
async def tasks():
    return {"tasks": len(asyncio.all_tasks())}


@app.get("/slow")
async def slow():
    await asyncio.sleep(0.2)  # longer than the entrypoint's 50 ms disconnect-watch timer
    return "slow"
