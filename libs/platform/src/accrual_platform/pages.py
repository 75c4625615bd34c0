"""The one page-token codec of every list: opaque tokens that carry a page's last sort key.

A token is the URL-safe base64 (unpadded) of a JSON array of strings. Decoding checks the
whole shape, so a token that did not come from a previous page of the same list is a 400
naming ``page_token``, never a silent first page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from accrual_platform import errors

FIELD = "page_token"
#: a token of a few keys is well under this; longer is not one of ours
MAX_TOKEN_LENGTH = 1024
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


class _BadToken(ValueError):
    pass


def text(max_length: int = 255) -> Callable[[str], str]:
    """A key part that is a non-empty printable string of at most ``max_length``."""

    def parse(value: str) -> str:
        if not value or len(value) > max_length or not value.isprintable():
            raise _BadToken(value)
        return value

    return parse


def uuid_key(value: str) -> str:
    """A key part that is a UUID, in its canonical spelling."""
    return str(uuid.UUID(value))


def timestamp(value: str) -> dt.datetime:
    """A key part that is a timezone-aware ISO 8601 timestamp."""
    at = dt.datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise _BadToken(value)
    return at


def invalid() -> errors.InvalidArgument:
    return errors.InvalidArgument.field(FIELD, "is not a token from a previous page of this list")


class Codec:
    """The tokens of one list: its name, then its sort key's parts, each of a kind (a parser
    of the part's text that raises ValueError for what no page of the list could end with).
    The name makes a token of another list a 400 too, even when its key has the same shape."""

    def __init__(self, name: str, *kinds: Callable[[str], Any]) -> None:
        self.name, self.kinds = name, kinds

    def encode(self, *parts: str | dt.datetime) -> str:
        """The token of a page's last sort key (timestamps keep their offset)."""
        if len(parts) != len(self.kinds):
            raise TypeError(f"a {self.name} token has {len(self.kinds)} parts")
        values = [self.name, *(p.isoformat() if isinstance(p, dt.datetime) else str(p) for p in parts)]
        raw = json.dumps(values, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, token: str) -> tuple[Any, ...]:
        """The key parts of ``token``, each parsed by its kind; a 400 naming ``page_token``
        for anything but a token this codec made."""
        try:
            if len(token) > MAX_TOKEN_LENGTH or not _ALPHABET.fullmatch(token):
                raise _BadToken(token)
            values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if (not isinstance(values, list) or len(values) != len(self.kinds) + 1
                    or not all(isinstance(v, str) for v in values) or values[0] != self.name):
                raise _BadToken(token)
            return tuple(kind(v) for kind, v in zip(self.kinds, values[1:], strict=True))
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            # json.JSONDecodeError and _BadToken are ValueErrors too
            raise invalid() from None

    def decode_optional(self, token: str) -> tuple[Any, ...] | None:
        """:meth:`decode`, or None for an absent token (the first page)."""
        return self.decode(token) if token else None
