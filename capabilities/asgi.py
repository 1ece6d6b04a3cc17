"""Any ASGI 3 callable: ``app: "module:attr"`` or ``"module:factory()"``."""

from watt.capability import Capability, CapabilityError, find_app_file, import_app


def detect(path: str) -> dict | None:
    return find_app_file(path)


def load(options: dict):
    spec = options.get("app")
    if not spec:
        raise CapabilityError("no `app` given and none found (main.py:app, app.py:app, "
                              "asgi.py:application)", code="WATT_CAPABILITY_UNDETECTED")
    return import_app(spec)


capability = Capability(
    name="asgi",
    loader="capabilities.asgi:load",
    detect=detect,
    isolation="auto",
    priority=0,
    description="any ASGI 3 application",
)
