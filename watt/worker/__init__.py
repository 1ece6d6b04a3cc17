"""Code that runs INSIDE a worker (subinterpreter or child process).

Imports only the standard library, ``watt.channel`` and ``watt.capability``,
so it loads in a subinterpreter; never the runtime, router, config or msgspec.
"""
