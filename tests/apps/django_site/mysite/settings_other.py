"""Chosen with DJANGO_SETTINGS_MODULE in the application's env (a test of the override)."""
from .settings import *  # noqa: F403

TIME_ZONE = "Europe/Paris"
