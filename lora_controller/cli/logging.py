"""Structured logging: structlog for our code, the standard library's loggers routed through it.

Every line, ours or a library's, ends in one renderer that passes the finished text through
`core.redaction.redact`, and tracebacks are rendered plainly, without local variables (a rich
traceback's locals showed a request's raw bytes, bearer token included).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from lora_controller.core.redaction import redact


class RedactingRenderer:
    """A final renderer whose output has every known credential replaced by ***."""

    def __init__(self, renderer: structlog.typing.Processor) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, name: str, event_dict: structlog.typing.EventDict) -> str:
        rendered = self.renderer(logger, name, event_dict)
        text = rendered.decode() if isinstance(rendered, bytes | bytearray) else str(rendered)
        return redact(text)


def configure_logging(*, fmt: str = "console", level: str = "info") -> None:
    """JSON lines (`fmt="json"`) for clusters, aligned key=value for people."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer = RedactingRenderer(
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                           exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=shared))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if numeric < logging.INFO else numeric)
    for noisy in ("aiohttp.access", "botocore", "s3fs", "fsspec", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
