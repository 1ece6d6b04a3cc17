"""A Starlette service in a subinterpreter, reached only at http://catalog.plt.local."""

import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

ITEMS = {
    1: {"id": 1, "name": "teapot", "price_cents": 2500},
    2: {"id": 2, "name": "kettle", "price_cents": 4200},
}


def served_by() -> dict:
    import _interpreters

    return {"pid": os.getpid(), "interpreter": _interpreters.get_current()[0]}


async def items(request):
    return JSONResponse({"items": list(ITEMS.values()), "served_by": served_by()})


async def item(request):
    found = ITEMS.get(request.path_params["item_id"])
    if found is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    return JSONResponse({"item": found, "served_by": served_by()})


app = Starlette(routes=[Route("/items", items), Route("/items/{item_id:int}", item)])
