"""Secrets in URIs are never shown: :func:`redact` masks them in any text before a face shows it.

A tracking URI may carry credentials (``https://user:password@host``, ``?token=...``). Every message, link,
HTML repr, REST body, log line and folder name that shows a URI goes through :func:`redact`; the
:class:`RedactingFilter` applies it to log records (the Jupyter server log), tracebacks included.
"""

from __future__ import annotations

import logging
import re

__all__ = ["redact", "RedactingFilter", "MASK"]

MASK = "***"

# scheme://userinfo@ : the whole userinfo goes (a "user" is often a token itself).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#@'\"<>]+)@")
# ?key=value / &key=value whose key names a secret.
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:[^=&;#\s'\"<>]*?)(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|access[_-]?key|apikey|"
    r"auth|credential|signature|sig|session)[^=&;#\s'\"<>]*=)(?P<value>[^&;#\s'\"<>]+)",
    re.IGNORECASE,
)
_URL_ENCODED_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*%3A%2F%2F)(?P<userinfo>[^\s/?#@'\"<>]+?)%40",
                                   re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the credentials of every URI in it masked: user and password, and secret query values.

    >>> redact("https://alice:s3cret@mlflow.example.com/?token=abc&x=1")
    'https://***@mlflow.example.com/?token=***&x=1'
    """
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _URL_ENCODED_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}%40", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """A log filter (for handlers) that redacts each record's message and traceback before it is written."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is written as it is
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
