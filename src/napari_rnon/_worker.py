"""Background runs of the dock widgets: a napari worker thread, progress and Cancel.

The Inpaint and Fine-tune widgets run their work the same way, through
:class:`WorkerMixin`: one run at a time; the choices are checked on the GUI thread
(a :class:`~napari_rnon._planes.UserError` becomes a warning and starts nothing); the work
runs in a napari worker thread, reports progress through a queued Qt signal
(:func:`progress_relay`) and polls a cancel flag (set by the widget's Cancel button or the
Cancel of napari's activity dock); errors become napari notifications and a status line;
when the worker ends, the buttons come back.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal

from napari_rnon._planes import RunCancelled, UserError

if TYPE_CHECKING:
    from magicgui.widgets import Label
    from napari.qt.threading import FunctionWorker

logger = logging.getLogger(__name__)

J = TypeVar("J")


@functools.cache
def _relay_class(types: tuple[type, ...]) -> type[QObject]:
    return type("ProgressRelay", (QObject,), {"progress": Signal(*types)})


def progress_relay(*types: type) -> QObject:
    """A QObject whose ``progress`` signal carries values of ``types``.

    Created on the GUI thread, it lives there: emitting ``progress`` from a worker thread
    queues the connected slots to run on the GUI thread.
    """
    return _relay_class(tuple(types))()


class WorkerMixin:
    """One background run at a time for a magicgui dock widget.

    The widget calls :meth:`_init_worker` first thing in ``__init__``, has a ``_status``
    Label and a ``_set_running(running)`` method (enable or disable its buttons), and sets
    :attr:`_what`, :attr:`_busy_message` and :attr:`_cancelled_message`. Its ``run``
    checks the choices with :meth:`_prepare_run` and starts the work with
    :meth:`_start_worker`; the work polls :meth:`_cancelled` and reports through
    ``self._relay.progress.emit``. A widget may extend :meth:`_on_errored` and
    :meth:`_on_finished` (calling these).
    """

    #: The work, for messages ("Inpainting", "Fine-tuning").
    _what: ClassVar[str]
    #: Warning shown when a run is asked for while one is going on.
    _busy_message: ClassVar[str]
    #: Notification after a run cancelled without a reason.
    _cancelled_message: ClassVar[str]

    _status: Label

    def _init_worker(self, *progress_types: type, on_progress: Callable[..., None]) -> None:
        """Set up the worker state and the relay whose signal carries ``progress_types``."""
        self._worker: FunctionWorker | None = None
        self._cancel_event = threading.Event()
        self._cancel_reason = ""
        self._pbar: Any = None
        self._run_over = False
        self._relay = progress_relay(*progress_types)
        self._relay.progress.connect(on_progress)

    def _set_running(self, running: bool) -> None:
        raise NotImplementedError

    def _prepare_run(self, prepare: Callable[..., J], *args: Any) -> J | None:
        """``prepare(*args)`` on the GUI thread; None (after a warning) if refused.

        Refused: a run is going on, or ``prepare`` raised a :class:`UserError` (its message
        is the warning, and stays in the widget's status line).
        """
        if self._worker is not None:
            show_warning(self._busy_message)
            return None
        try:
            return prepare(*args)
        except UserError as exc:
            show_warning(str(exc))
            self._status.value = str(exc)
            return None

    def _start_worker(
        self,
        work: Callable[[J], Any],
        job: J,
        on_returned: Callable[[Any], None],
        *,
        progress_desc: str | None = None,
    ) -> FunctionWorker:
        """Run ``work(job)`` in a napari worker thread; ``on_returned`` gets its result.

        Args:
            work: Runs in the worker thread.
            job: Its argument, prepared on the GUI thread.
            on_returned: Called on the GUI thread with the result.
            progress_desc: With a description, a cancelable napari progress bar (in the
                activity dock) follows the run; :meth:`_update_pbar` moves it.

        Returns:
            The started worker.
        """
        from napari.qt.threading import create_worker

        self._cancel_event.clear()
        self._cancel_reason = ""
        self._run_over = False
        if progress_desc is not None:
            from napari.utils import cancelable_progress

            self._pbar = cancelable_progress(
                total=0, desc=progress_desc, cancel_callback=self.cancel
            )
        self._set_running(True)
        worker = create_worker(
            work,
            job,
            _start_thread=False,
            _connect={
                "returned": functools.partial(self._on_work_returned, on_returned),
                "errored": self._on_errored,
                "finished": self._on_finished,
            },
        )
        self._worker = worker
        worker.start()
        return worker

    def cancel(self, reason: str = "") -> None:
        """Ask the running work to stop at its next check; it then writes nothing.

        Args:
            reason: Shown as a warning when the run has stopped (default: a note that it
                was cancelled).
        """
        if self._worker is None:
            return
        self._cancel_reason = reason or self._cancel_reason
        self._cancel_event.set()
        self._status.value = "Cancelling..."

    def _on_work_returned(self, on_returned: Callable[[Any], None], result: Any) -> None:
        self._run_over = True
        on_returned(result)

    def _progress_is_stale(self) -> bool:
        """Whether the run has already returned or failed (GUI thread).

        napari's progress bar processes Qt events when it moves, so the result can be
        handled inside a progress slot; progress handled after it must not overwrite what
        the result wrote.
        """
        return self._run_over

    def _cancelled(self) -> bool:
        """Whether Cancel was asked for, here or in napari's activity dock (any thread)."""
        pbar = self._pbar
        return self._cancel_event.is_set() or bool(pbar is not None and pbar.is_canceled)

    def _update_pbar(self, done: int, total: int) -> None:
        """Move the napari progress bar to ``done`` of ``total`` (GUI thread)."""
        pbar = self._pbar
        if pbar is None:
            return
        if pbar.total != total:
            pbar.total = total
        if done > pbar.n:
            pbar.update(done - pbar.n)

    def _on_errored(self, exc: BaseException) -> None:
        """Report a failed or cancelled run (GUI thread)."""
        from rnon_engine.errors import Cancelled, RnonError

        self._run_over = True
        if isinstance(exc, (RunCancelled, Cancelled)):
            if self._cancel_reason:
                show_warning(self._cancel_reason)
            else:
                show_info(self._cancelled_message)
            self._status.value = "Cancelled."
        elif isinstance(exc, (RnonError, UserError)):
            show_error(str(exc))
            self._status.value = f"Error: {exc}"
        else:
            logger.error("RNON %s failed", self._what.lower(), exc_info=exc)
            show_error(f"{self._what} failed ({type(exc).__name__}): {exc}")
            self._status.value = f"Error: {exc}"

    def _on_finished(self) -> None:
        """Close the napari progress bar and give the buttons back (GUI thread)."""
        if self._pbar is not None:
            self._pbar.close()
        self._pbar = None
        self._worker = None
        try:
            self._set_running(False)
        except RuntimeError:  # widget already deleted
            pass
