"""A Litestar service in its own process, reached only at http://inventory.plt.local."""

import os

from litestar import Litestar, get
from litestar.exceptions import NotFoundException

STOCK = {"teapot": 12, "kettle": 3}


@get("/items/{item:str}")
async def item(item: str) -> dict:
    if item not in STOCK:
        raise NotFoundException(f"no item {item}")
    return {"item": item, "count": STOCK[item], "pid": os.getpid()}


app = Litestar(route_handlers=[item])
