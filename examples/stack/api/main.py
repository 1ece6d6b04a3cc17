"""A FastAPI app behind the gateway at /api (the prefix is cut off): it runs in a
child process (pydantic-core refuses subinterpreters) and publishes /openapi.json,
which the gateway merges with its paths under /api."""

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

app = FastAPI(title="api", version="1.0.0")


class Item(BaseModel):
    id: int
    name: str


ITEMS = {1: Item(id=1, name="kettle"), 2: Item(id=2, name="teapot")}


@app.get("/items")
async def list_items() -> list[Item]:
    return list(ITEMS.values())


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> Item:
    if item_id not in ITEMS:
        raise HTTPException(404, f"no item {item_id}")
    return ITEMS[item_id]


@app.get("/whoami")
async def whoami(request: Request) -> dict:
    """What the app received: its own path and the headers the gateway set."""
    return {"path": request.url.path, "headers": dict(request.headers)}
