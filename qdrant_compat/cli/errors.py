"""The CLI's one error boundary: every failure becomes one line on stderr and an exit code.

Exit codes: 0 ok; 1 error (bad input, refused operation, I/O, Qdrant); 2 usage (click); 3 busy (an
upgrade job or the embedded store is held by another process: wait and run again); 130 interrupted.
"""

from __future__ import annotations

import errno
import sqlite3

from qdrant_compat.errors import JobLockedError, QdrantCompatError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def describe(exc: BaseException, where: str = "") -> tuple[str, int]:
    """(one-line message, exit code) for any exception a command can raise."""
    if isinstance(exc, JobLockedError):
        return str(exc), EXIT_BUSY
    if isinstance(exc, QdrantCompatError):
        return str(exc), EXIT_ERROR
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted; nothing is half-done: run the same command again to resume", EXIT_INTERRUPTED
    text = " ".join(str(exc).split())
    if isinstance(exc, RuntimeError) and "already accessed by another instance" in text:
        return (f"the embedded store {where} is in use by another process (an 'upgrade run'?); wait for it to finish "
                "and run the command again, or use a Qdrant server (--url) for concurrent access"), EXIT_BUSY
    try:  # qdrant-client's HTTP errors
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(exc, UnexpectedResponse):
            return f"Qdrant answered HTTP {exc.status_code}: {exc.content.decode(errors='replace')[:300]}", EXIT_ERROR
        if isinstance(exc, ResponseHandlingException):
            return f"cannot reach the Qdrant server {where}: {' '.join(str(_root(exc)).split()) or type(_root(exc)).__name__}", EXIT_ERROR
    except ImportError:  # pragma: no cover
        pass
    root = _root(exc)
    if isinstance(root, ConnectionError) or type(root).__name__ in ("ConnectError", "ConnectTimeout", "RpcError"):
        return f"cannot reach the Qdrant server {where}: {' '.join(str(root).split())}", EXIT_ERROR
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "disk is full" in text or "No space left" in text:
        name = getattr(exc, "filename", None)
        return (f"disk full{f' writing {name}' if name else ''}: the step was not completed and nothing half-written "
                "is kept; free space and run the same command again"), EXIT_ERROR
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly database" in text:
        name = getattr(exc, "filename", None) or where
        return f"cannot write {name}: {'read-only' if 'read' in text.lower() else 'permission denied'}", EXIT_ERROR
    if isinstance(exc, OSError):
        return f"{exc.strerror or text}{f': {exc.filename}' if exc.filename else ''}", EXIT_ERROR
    if isinstance(exc, sqlite3.Error):
        return f"the embedded store {where} failed: {text}", EXIT_ERROR
    return f"unexpected {type(exc).__name__}: {text} (run with -v for the traceback, and please report it)", EXIT_ERROR
