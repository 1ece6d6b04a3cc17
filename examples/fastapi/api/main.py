"""The entrypoint, a FastAPI app: it runs in a child process (pydantic-core cannot
load in a subinterpreter) and calls the Starlette catalog through the mesh."""

import os

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="shop")


class Product(BaseModel):
    id: int
    name: str
    price_cents: int


class Quote(BaseModel):
    product: Product
    quantity: int
    total_cents: int
    served_by: dict


@app.get("/")
async def home() -> dict:
    return {"app": "api", "try": ["/products", "/quote/1?quantity=3", "/docs"]}


@app.get("/products")
async def products() -> list[Product]:
    # No network: catalog.plt.local is answered over an in-memory channel.
    async with httpx.AsyncClient(base_url="http://catalog.plt.local") as client:
        reply = await client.get("/items")
    return [Product(**item) for item in reply.json()["items"]]


@app.get("/quote/{product_id}")
async def quote(product_id: int, quantity: int = 1) -> Quote:
    async with httpx.AsyncClient(base_url="http://catalog.plt.local") as client:
        reply = await client.get(f"/items/{product_id}")
    if reply.status_code == 404:
        raise HTTPException(404, f"no product {product_id}")
    body = reply.json()
    product = Product(**body["item"])
    return Quote(product=product, quantity=quantity,
                 total_cents=product.price_cents * quantity,
                 served_by={"api_pid": os.getpid(), "catalog": body["served_by"]})
