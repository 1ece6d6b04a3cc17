"""Watt's built-in capabilities: one module per kind of application."""
