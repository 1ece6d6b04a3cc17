"""Console logging for the runtime (loguru), tagged with the application id."""

from __future__ import annotations

import sys

from loguru import logger

_FORMAT = ("<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
           "<cyan>{extra[app]}</cyan> {message}")


def configure_logging(level: str = "INFO") -> None:
    """One stderr sink; coloured when stderr is a terminal."""
    logger.remove()
    logger.configure(extra={"app": "watt"})
    logger.add(sys.stderr, level=level.upper(), format=_FORMAT, colorize=None,
               backtrace=False, diagnose=False)
