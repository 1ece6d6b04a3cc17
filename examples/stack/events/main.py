"""A Starlette app behind the gateway at /events (subinterpreter): streams large
bodies both ways and echoes WebSocket messages."""

import asyncio
import hashlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

CHUNK = 64 * 1024
# Progress of the uploads and a gate for /held: shows bodies move while they are
# still being sent (one worker, so one copy of these).
STATE = {"received": 0}
RELEASE = asyncio.Event()


async def home(request):
    return JSONResponse({"app": "events", "path": request.url.path})


async def upload(request):
    """Reads the body as it arrives: its size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        STATE["received"] += len(chunk)
    return JSONResponse({"size": size, "sha256": digest.hexdigest()})


async def download(request):
    """``size`` bytes of a repeating pattern, produced as they are sent."""
    size = int(request.query_params.get("size", "1048576"))
    pattern = bytes(range(256)) * (CHUNK // 256)

    async def body():
        left = size
        while left > 0:
            piece = pattern[:min(CHUNK, left)]
            left -= len(piece)
            yield piece

    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={"x-size": str(size)})


async def progress(request):
    return JSONResponse(STATE)


async def held(request):
    """Sends its first bytes at once and the rest only after ``POST /release``."""
    RELEASE.clear()

    async def body():
        yield b"first;"
        await RELEASE.wait()
        yield b"rest"

    return StreamingResponse(body(), media_type="text/plain")


async def release(request):
    RELEASE.set()
    return JSONResponse({"released": True})


async def echo(websocket):
    await websocket.accept()
    async for message in websocket.iter_text():
        if message == "prefix":  # set by the gateway on the handshake
            await websocket.send_text(websocket.headers.get("x-forwarded-prefix", "none"))
            continue
        if message == "bye":
            await websocket.close(4001, "bye")
            return
        await websocket.send_text(f"echo: {message}")


app = Starlette(routes=[Route("/", home), Route("/upload", upload, methods=["POST"]),
                        Route("/download", download), Route("/progress", progress),
                        Route("/held", held), Route("/release", release, methods=["POST"]),
                        WebSocketRoute("/echo", echo)])
