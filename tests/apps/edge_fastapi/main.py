"""A FastAPI app whose OpenAPI document (/openapi.json) the edge validates requests with."""

from fastapi import FastAPI, Header, Query
from pydantic import BaseModel, Field

app = FastAPI()


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: list[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, x_tenant: str = Header(), verbose: bool = False,
                    limit: int = Query(10, ge=1, le=100), tag: list[str] = Query([])):
    return {"item_id": item_id, "tenant": x_tenant, "verbose": verbose, "limit": limit,
            "tag": tag}


@app.post("/items")
async def create_item(item: Item):
    return {"created": item.model_dump()}
