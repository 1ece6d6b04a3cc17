"""A Litestar app whose OpenAPI document (/schema/openapi.json) the edge validates with."""

from dataclasses import dataclass, field
from typing import Annotated

from litestar import Litestar, get, post
from litestar.params import Parameter


@dataclass
class Item:
    name: str
    price: float
    tags: list[str] = field(default_factory=list)


@get("/items/{item_id:int}")
async def read_item(item_id: int, x_tenant: Annotated[str, Parameter(header="x-tenant")],
                    limit: Annotated[int, Parameter(ge=1, le=100)] = 10) -> dict:
    return {"item_id": item_id, "tenant": x_tenant, "limit": limit}


@post("/items")
async def create_item(data: Item) -> dict:
    return {"created": {"name": data.name, "price": data.price, "tags": data.tags}}


app = Litestar(route_handlers=[read_item, create_item])
