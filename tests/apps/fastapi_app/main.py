"""FastAPI needs pydantic-core, which refuses subinterpreters: `auto` must use a process."""

import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/whoami")
async def whoami():
    import _interpreters

    return {"app": "fastapi", "pid": os.getpid(), "interpreter": _interpreters.get_current()[0]}
