"""Finding the handlers attached to an ignite engine (ignite keeps no public list of them)."""

from __future__ import annotations

from typing import Any


def handler_owner(func: Any) -> Any:
    """The object an ignite event handler belongs to (bound method -> instance, callable object -> itself)."""
    return getattr(func, "__self__", func)


def attached_handlers(engine: Any) -> list[Any]:
    """Every distinct handler object attached to ``engine``, in the order ignite calls them.

    Args:
        engine: an ignite ``Engine`` (a MONAI trainer or evaluator).

    Returns:
        the handler objects (a ``CheckpointSaver``, an ``MLFlowHandler``, ...), each once.
    """
    found, seen = [], set()
    for entries in list(getattr(engine, "_event_handlers", {}).values()):
        for func, *_ in entries:
            owner = handler_owner(func)
            if id(owner) not in seen:
                seen.add(id(owner))
                found.append(owner)
    return found
