"""Configuration section ``dashboard``: start the admin dashboard with the runtime.

Part of the schema in :mod:`watt.config` (kept apart only to keep that module
readable); the same rules hold: unknown keys are errors, keys are camelCase.
``watt admin`` starts the same dashboard on a running runtime; this section
starts it at once, and makes its traces view work without a ``telemetry``
section (:func:`dashboard_telemetry`).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec

from watt.config_telemetry import TelemetryConfig
from watt.errors import ConfigError


def _doc(description: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=description, **constraints)


class DashboardConfig(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    """Where the dashboard listens, and how much it traces when `telemetry` is absent."""

    hostname: Annotated[str, _doc("An IP address or `localhost`; anyone who reaches it and "
                                  "holds the printed URL's token can act on the runtime.")
                        ] = "127.0.0.1"
    port: Annotated[int, _doc("TCP port; 0 picks a free one.", ge=0, le=65535)] = 0
    sample_ratio: Annotated[
        float, _doc("Without a `telemetry` section: the share of new traces recorded into "
                    "the dashboard's memory only (0-1). Ignored when `telemetry` is set.",
                    ge=0, le=1)] = 1.0

    def __post_init__(self) -> None:
        if not is_address(self.hostname):
            raise ValueError(f"hostname must be an IP address or localhost, not "
                             f"{self.hostname!r}")


def is_address(hostname: str) -> bool:
    """An IP address or ``localhost``: what the dashboard may listen on (no DNS)."""
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def dashboard_settings(loaded) -> DashboardConfig | None:
    """The ``dashboard`` of a :class:`watt.config.LoadedConfig` as settings, or None
    when it is off; an error when the management API it serves is off."""
    setting = loaded.config.dashboard
    if setting is False:
        return None
    api = loaded.management_api
    if api is False or (not isinstance(api, bool) and not api.enabled):
        raise ConfigError("`dashboard` serves the management API, which `managementApi` "
                          "turns off: remove one of them", code="WATT_CONFIG_INVALID",
                          key="dashboard", file=loaded.file)
    return DashboardConfig() if setting is True else setting


def dashboard_telemetry(dashboard: DashboardConfig | None,
                        telemetry: TelemetryConfig | None) -> TelemetryConfig | None:
    """The tracing the runtime starts with: ``telemetry`` as configured; without it and
    with a dashboard, spans recorded at ``dashboard.sampleRatio`` and given to no
    exporter but the memory one the dashboard adds while it is on."""
    if telemetry is not None or dashboard is None:
        return telemetry
    return TelemetryConfig(exporter=[], sample_ratio=dashboard.sample_ratio)
