"""Placeholder: the adapter is being written; until then this client is not patched."""


def patch(module) -> None:
    return None
