"""What a value must look like to reach the database; everything else is a 400 at the edge.

Python's JSON parser hands over values that no column can hold (NUL, which PostgreSQL refuses;
lone surrogates, which no driver can encode) and raises RecursionError on deep nesting.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .errors import InvalidRequest

MAX_EMAIL_LENGTH = 254
# Deliberately loose (RFC 5321 allows much); the mailbox itself proves an address.
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# secrets.token_urlsafe(24) makes 32 of these; 64 is the column's length.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def checked_form(body: dict[str, Any]) -> dict[str, Any]:
    """`body` if it is a flat object whose strings every database can store.

    InvalidRequest for a list or an object as a value (no form nests), NUL or a lone
    surrogate in a name or a value.
    """
    for name, value in body.items():
        if not is_storable(name):
            raise InvalidRequest("a field name holds NUL or a lone surrogate")
        if isinstance(value, dict | list):
            raise InvalidRequest(f"{name}: must be a single value, not a list or an object")
        if isinstance(value, str) and not is_storable(value):
            raise InvalidRequest(f"{name}: holds NUL or a lone surrogate")
    return body


def is_storable(text: str) -> bool:
    """False for text with NUL or a lone surrogate."""
    return _UNSTORABLE.search(text) is None


def canonical_email(email: str) -> str:
    """The form emails are stored and looked up in: NFKC, trimmed, case-folded, so that
    visually identical spellings (NFC and NFD, fullwidth letters) are one account."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


def checked_email(email: object) -> str:
    """The canonical email; InvalidRequest naming the field if it is not an address.

    Control and format characters (zero-width spaces, soft hyphens, a BOM) are refused: they
    would make look-alike accounts.
    """
    if not isinstance(email, str):
        raise InvalidRequest("email: must be a string")
    canonical = canonical_email(email)
    if any(unicodedata.category(character).startswith("C") for character in canonical):
        raise InvalidRequest("email: holds a control or invisible character")
    if len(canonical) > MAX_EMAIL_LENGTH or not _EMAIL_PATTERN.fullmatch(canonical):
        raise InvalidRequest("email: is not a valid email address")
    return canonical


def printable(text: str) -> str:
    """`text` without control characters (for headers kept as data, such as User-Agent)."""
    return "".join(c for c in text if not unicodedata.category(c).startswith("C"))


def is_session_id(text: str) -> bool:
    """True if `text` has the shape of a session id (and so can be looked up at all)."""
    return _SESSION_ID.fullmatch(text) is not None


def checked_role(role: object) -> str:
    """A role: a short lower-case identifier (`admin`, `support-2`); InvalidRequest otherwise."""
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise InvalidRequest(
            "role: must be 1 to 32 characters, a lower-case letter then letters, digits, - or _"
        )
    return role
