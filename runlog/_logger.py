"""RunlogLogger: the structlog bound logger whose records go straight to the handler."""

from __future__ import annotations

from typing import Any, Final

import structlog
import structlog.contextvars

from ._records import LEVEL_NUMBERS
from .handler import DEFAULT_COMPONENT, exc_info_text, get_handler

__all__ = ["RunlogLogger"]

# structlog keeps bind_contextvars() values in one ContextVar per key; reading
# that dict directly skips a copy of the whole context when it is empty.
_STRUCTLOG_VARS: dict[str, Any] | None = getattr(
    structlog.contextvars, "_CONTEXT_VARS", None
)
_UNSET: Final = Ellipsis
_STRUCTLOG_PREFIX: Final = getattr(
    structlog.contextvars, "STRUCTLOG_KEY_PREFIX", "structlog_"
)


_HANDLER: Final = get_handler()


def _merge_contextvars(values: dict[str, Any]) -> None:
    if _STRUCTLOG_VARS is None:
        values.update(
            (k, v)
            for k, v in structlog.contextvars.get_contextvars().items()
            if k not in values
        )
        return
    for key, var in _STRUCTLOG_VARS.items():
        value = var.get(_UNSET)
        if value is not _UNSET:
            # structlog names its variables "structlog_<key>"
            key = key.removeprefix(_STRUCTLOG_PREFIX)
            if key not in values:
                values[key] = value


class RunlogLogger(structlog.stdlib.BoundLogger):
    """
    A structlog stdlib BoundLogger whose records go straight to runlog's files.

    ``bind``/``unbind``/``new`` and structlog's context variables work as
    usual; the bound ``component`` decides the file. Records skip stdlib's
    LogRecord and formatter chain (that is what makes runlog fast); levels
    below every destination's threshold cost one comparison.
    """

    def _emit(
        self, level_no: int, event: Any, args: tuple[Any, ...], kw: dict[str, Any]
    ) -> None:
        context = self._context
        if (
            len(context) == 1
            and "component" in context
            and _STRUCTLOG_VARS is not None
            and not _STRUCTLOG_VARS
        ):
            # what get_logger() makes, with no structlog context variables:
            # kw is this call's own dict and needs no copy (see #16)
            values = kw
            component = (
                kw.pop("component") if "component" in kw else context["component"]
            )
        else:
            values = {**context, **kw} if kw else dict(context)
            if _STRUCTLOG_VARS or _STRUCTLOG_VARS is None:
                _merge_contextvars(values)
            component = values.pop("component", DEFAULT_COMPONENT)
        exc_text = None
        if "exc_info" in values:
            exc_text = exc_info_text(values.pop("exc_info"))
        if "stack_info" in values:
            del values["stack_info"]
        if args:
            event = _format_args(event, args)
        _HANDLER.write(level_no, event, self._logger.name, component, values, exc_text)

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at debug."""
        if _HANDLER.min_level <= 10:
            self._emit(10, event, args, kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at info."""
        if _HANDLER.min_level <= 20:
            self._emit(20, event, args, kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at warning."""
        if _HANDLER.min_level <= 30:
            self._emit(30, event, args, kw)

    warn = warning

    def error(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at error."""
        if _HANDLER.min_level <= 40:
            self._emit(40, event, args, kw)

    def critical(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at critical."""
        self._emit(50, event, args, kw)

    fatal = critical

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at error with the current exception's traceback."""
        kw.setdefault("exc_info", True)
        self._emit(40, event, args, kw)

    def log(self, level: int, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at a stdlib level number."""
        if level >= _HANDLER.min_level:
            self._emit(level, event, args, kw)

    def msg(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at info (structlog's ``msg``)."""
        self.info(event, *args, **kw)

    def _proxy_to_logger(
        self,
        method_name: str,
        event: str | None = None,
        *event_args: Any,
        **event_kw: Any,
    ) -> Any:
        level = LEVEL_NUMBERS.get(method_name, 20)
        if level >= _HANDLER.min_level:
            self._emit(level, event, event_args, event_kw)


def _format_args(event: Any, args: tuple[Any, ...]) -> str:
    try:
        return str(event) % args
    except (TypeError, ValueError):
        return f"{event} {args!r}"
