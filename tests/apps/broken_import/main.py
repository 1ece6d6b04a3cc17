"""Fails at import time: the test checks the user sees this file and line."""

import json  # noqa: F401

from this_module_does_not_exist import something  # noqa: F401  (line 5)

app = None
