"""A FastAPI app whose OpenAPI document depends on a file read at import, so it changes
between starts: the file names the type of ``item_id`` (``int`` or ``str``), or is
``none`` for an app that publishes no document; ``/crash`` ends its worker."""

import os

from fastapi import FastAPI

with open(os.environ["DOC_VERSION_FILE"], encoding="utf-8") as fh:
    VERSION = fh.read().strip()

app = FastAPI(openapi_url=None if VERSION == "none" else "/openapi.json")


@app.get("/crash")
async def crash():
    os._exit(1)  # the worker dies: the runtime restarts it (restartOnError)

if VERSION == "int":
    @app.get("/items/{item_id}")
    async def read_item(item_id: int):
        return {"item_id": item_id, "version": VERSION}
else:
    @app.get("/items/{item_id}")
    async def read_item(item_id: str):
        return {"item_id": item_id, "version": VERSION}
