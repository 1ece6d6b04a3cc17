"""Configuration sections for how many workers run and the application's own checks:
``workers: {min, max}`` and ``applications[].health``.

Part of the schema in :mod:`watt.config` (kept apart only to keep that module
readable); the same rules hold: unknown keys are errors, keys are camelCase.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: 'module:attr' or 'module:factory()', dotted names allowed on both sides.
APP_PATTERN = rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*(\(\))?$"
#: 'module:function' (no call): a health check.
CHECK_PATTERN = rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$"


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class _Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class WorkersConfig(_Section):
    """Dynamic workers: between `min` and `max`, on the workers' event-loop utilization."""

    maximum: Annotated[int, _doc("Most workers.", ge=1)] = msgspec.field(name="max")
    minimum: Annotated[int, _doc("Workers started, and the fewest kept.", ge=1)] = \
        msgspec.field(default=1, name="min")
    scale_up_elu: Annotated[
        float, _doc("Average event-loop utilization (0-1) of the workers above which one more "
                    "starts.", ge=0, le=1)] = msgspec.field(default=0.8, name="scaleUpELU")
    scale_down_elu: Annotated[
        float, _doc("Average event-loop utilization (0-1) below which one worker is drained "
                    "and stopped.", ge=0, le=1)] = msgspec.field(default=0.2, name="scaleDownELU")
    scale_checks: Annotated[
        int, _doc("Health checks in a row the average must stay above (or below) before "
                  "a worker is added (or removed).", ge=1)] = 3


class AppHealthConfig(_Section):
    """The application's own checks: functions in its code, called every `health.interval`."""

    ready: Annotated[
        Annotated[str, msgspec.Meta(pattern=CHECK_PATTERN)] | None,
        _doc("'module:function' returning true when the worker may take requests "
             "(sync or async)."),
    ] = None
    live: Annotated[
        Annotated[str, msgspec.Meta(pattern=CHECK_PATTERN)] | None,
        _doc("'module:function' returning false when the worker must be replaced "
             "(sync or async)."),
    ] = None
