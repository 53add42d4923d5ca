"""Turn an input error raised anywhere in an engine run into a clean end of the run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.bundle.errors import BundleInputError, Interrupted, find_input_error

if TYPE_CHECKING:
    from ignite.engine import Engine


class InputErrorHandler:
    """On ``EXCEPTION_RAISED``, end the run with :class:`BundleInputError` when the cause is bad input.

    A label or image check fails inside a transform, possibly in a DataLoader worker, and reaches the
    engine wrapped in MONAI's ``RuntimeError: applying transform ...``. This handler finds the check's
    message and re-raises it as the one line the user sees; a Ctrl-C becomes :class:`Interrupted` (one line, exit
    status 130); any other exception is re-raised unchanged.

    Put it first in ``train#handlers``, ``validate#handlers`` and the inference handlers: ignite calls
    exception handlers in order, and the ones after it (``CheckpointSaver(save_final=True)``,
    ``StatsHandler``) would otherwise save a checkpoint of the broken run and log the full traceback.
    """

    def attach(self, engine: Engine) -> None:
        """Register on ``engine``'s ``EXCEPTION_RAISED`` event.

        Args:
            engine: a MONAI trainer or evaluator.
        """
        from ignite.engine import Events

        engine.add_event_handler(Events.EXCEPTION_RAISED, self)

    def __call__(self, engine: Engine, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            # still a KeyboardInterrupt for the handlers that record the run as KILLED; one line, status 130
            from medseg.console import INTERRUPTED

            raise Interrupted(INTERRUPTED) from None
        message = find_input_error(exc)
        if message is None:
            raise exc
        if isinstance(exc, BundleInputError):
            raise exc
        raise BundleInputError(message) from None
