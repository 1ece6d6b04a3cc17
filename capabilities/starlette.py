"""Starlette applications: an ASGI app that runs well in a subinterpreter."""

from watt.capability import Capability, find_app_file

from . import asgi


def detect(path: str) -> dict | None:
    return find_app_file(path, must_contain="starlette")


capability = Capability(
    name="starlette",
    loader="capabilities.asgi:load",
    detect=detect,
    isolation="auto",
    priority=10,
    description="Starlette application (module:attr)",
)

load = asgi.load
