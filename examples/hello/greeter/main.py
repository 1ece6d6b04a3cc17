"""A service: never exposed, reached at http://greeter.plt.local."""

import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    import _interpreters

    name = request.query_params.get("name", "world")
    return JSONResponse({"message": f"Hello, {name}!", "pid": os.getpid(),
                         "interpreter": _interpreters.get_current()[0]})


app = Starlette(routes=[Route("/hello", hello)])
