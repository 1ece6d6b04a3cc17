"""An ASGI app for the debugging tests (tests/test_debug.py): `/` answers at once,
`/pause` stops in breakpoint(), `/compute` runs the line the DAP test breaks on,
`/mesh/<app>/<path>` asks another application."""

import os

NAME = os.environ.get("APP_NAME", "debugging")


def compute(n):
    result = n * 2  # BREAK HERE (tests/test_debug.py looks this line up)
    return result


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/pause":
        value = f"{NAME} paused"
        breakpoint()
        body = value
    elif path == "/compute":
        body = f"{NAME} {compute(21)}"
    elif path.startswith("/mesh/"):  # /mesh/<app>/<path>: the same call to another app
        import watt.mesh

        target, _, rest = path.removeprefix("/mesh/").partition("/")
        body = (await watt.mesh.fetch(f"http://{target}.plt.local/{rest}")).body.decode()
    else:
        body = f"{NAME} ok"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})
