"""The users the extension signs in: its built-in `users` table, or the host's own model.

`UserModel` says, once at `init_app`, what the extension may read of a user: its key, the
columns a login may name, whether `is_active` and `role` are columns (read in the session
check's query) or Python attributes (read at login and refresh), and how a password is checked.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import cast

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import InstrumentedAttribute

from .models import AuthTables
from .models import BUILTIN_TABLES
from .models import tables_for
from .models import User
from .tokens import integer_subject
from .tokens import SubjectParser

DEFAULT_ROLE = "user"
#: The built-in table's login field: emails, stored canonical.
EMAIL_FIELD = "email"
MAX_STRING_KEY_LENGTH = 255


class UserModel:
    """What the extension knows of one user model (the built-in `User` or the host's)."""

    def __init__(
        self,
        model: type[Any],
        *,
        login_fields: Sequence[str],
        tables: AuthTables,
        builtin: bool = False,
        user_json: Callable[[Any], dict[str, Any]] | None = None,
    ) -> None:
        mapper = sa.inspect(model)
        (key,) = _single_key(model, mapper)
        self.model = model
        self.builtin = builtin
        self.tables = tables
        self.key: sa.Column[Any] = key
        self.key_attribute: str = mapper.get_property_by_column(key).key
        self.parse_key = _key_parser(key)
        self.login_fields = tuple(login_fields)
        self.login_columns = {name: _column(model, mapper, name) for name in self.login_fields}
        self.active_column = _optional_column(mapper, "is_active")
        self.role_column = _optional_column(mapper, "role")
        #: `is_active` or `role` is a Python attribute (Flask-Login's `UserMixin.is_active`):
        #: read from the instance at login and refresh, as no query can.
        self.reads_instance = any(
            column is None and hasattr(model, name)
            for name, column in (("is_active", self.active_column), ("role", self.role_column))
        )
        self.password_column = _optional_column(mapper, "password_hash")
        self.checks_password = callable(getattr(model, "check_password", None))
        self._user_json = user_json
        # What a login reads again under a lock before it commits: a change of these since
        # the password was checked fails the login (or the key alone: the user still exists).
        watched = (
            [_optional_column(mapper, "password_changed_at"), self.active_column]
            if builtin
            else [self.password_column, self.active_column]
        )
        self.recheck_columns: tuple[sa.Column[Any], ...] = tuple(
            column for column in watched if column is not None
        ) or (key,)
        self._recheck_attributes = tuple(
            mapper.get_property_by_column(column).key for column in self.recheck_columns
        )
        self._active_index = next(
            (i for i, column in enumerate(self.recheck_columns) if column is self.active_column),
            None,
        )

    @classmethod
    def builtin_users(cls) -> UserModel:
        """The built-in `users` table's (one for every app of the process)."""
        return _builtin_users()

    @classmethod
    def of_host(
        cls,
        db: SQLAlchemy,
        model: type[Any] | str,
        *,
        login_fields: Sequence[str],
        user_json: Callable[[Any], dict[str, Any]] | None,
    ) -> UserModel:
        """The host's model (its class, or its name in `db.Model`'s registry); RuntimeError
        naming what to change if it cannot be used."""
        resolved = _resolve(db, model) if isinstance(model, str) else model
        if not login_fields:
            raise RuntimeError("AuthManager(login_fields=...): name at least one column")
        key = _single_key(resolved, sa.inspect(resolved))[0]
        return cls(
            resolved,
            login_fields=login_fields,
            tables=tables_for(key),
            user_json=user_json,
        )

    @property
    def allows_password_login(self) -> bool:
        return self.checks_password or self.password_column is not None

    def key_of(self, user: Any) -> Any:
        """The primary key of `user`, an instance of this model; TypeError otherwise."""
        if not isinstance(user, self.model):
            raise TypeError(f"expected a {self.model.__name__} instance, got {type(user).__name__}")
        return getattr(user, self.key_attribute)

    def role_of(self, user: Any) -> str:
        """The `role` column or attribute of `user`; DEFAULT_ROLE without one."""
        role = getattr(user, "role", None)
        return str(role) if role else DEFAULT_ROLE

    def is_active(self, user: Any) -> bool:
        """The `is_active` column or attribute of `user`; True without one."""
        return bool(getattr(user, "is_active", True))

    def recheck_values(self, user: Any) -> tuple[Any, ...]:
        """The values of `recheck_columns` in the instance `user`."""
        return tuple(getattr(user, name) for name in self._recheck_attributes)

    def recheck_failure(self, current: tuple[Any, ...]) -> str:
        """Why a login whose recheck read `current` fails: the audit trail's reason."""
        if self._active_index is not None and not current[self._active_index]:
            return "inactive"
        return "password_changed"

    def to_public(self, user: Any) -> dict[str, Any]:
        """What the API shows of a user: `{id, role}` and the login fields, never a hash (or
        what the host's `user_json` makes of it)."""
        if self.builtin:
            public: dict[str, Any] = user.to_public()
            return public
        if self._user_json is not None:
            return self._user_json(user)
        key = self.key_of(user)
        shown = {"id": key if isinstance(key, int | str) else str(key), "role": self.role_of(user)}
        return shown | {name: getattr(user, name) for name in self.login_fields}


@functools.cache
def _builtin_users() -> UserModel:
    return UserModel(User, login_fields=(EMAIL_FIELD,), tables=BUILTIN_TABLES, builtin=True)


def _resolve(db: SQLAlchemy, name: str) -> type[Any]:
    for mapper in cast(Any, db.Model).registry.mappers:
        if mapper.class_.__name__ == name:
            return mapper.class_  # type: ignore[no-any-return]
    raise RuntimeError(
        f"AuthManager(user_model={name!r}): no model of that name is mapped on db.Model; "
        "import your models module before init_app, or pass the class itself."
    )


def _single_key(model: type[Any], mapper: Any) -> tuple[sa.Column[Any]]:
    columns = tuple(mapper.primary_key)
    if len(columns) != 1:
        raise RuntimeError(
            f"AuthManager(user_model={model.__name__}): the model needs a primary key of one "
            f"column (integer, UUID or string); it has {len(columns)}."
        )
    return (columns[0],)


def _column(model: type[Any], mapper: Any, name: str) -> InstrumentedAttribute[Any]:
    if _optional_column(mapper, name) is None:
        raise RuntimeError(
            f"AuthManager(login_fields=...): {name!r} is not a mapped column of "
            f"{model.__name__}; name columns a login may look a user up by."
        )
    return getattr(model, name)  # type: ignore[no-any-return]


def _optional_column(mapper: Any, name: str) -> sa.Column[Any] | None:
    prop = mapper.attrs.get(name)
    columns = getattr(prop, "columns", None)
    if not columns or not isinstance(columns[0], sa.Column):
        return None
    return columns[0]


def _key_parser(key: sa.Column[Any]) -> SubjectParser:
    """The key a token's `sub` names, in the key column's Python type; ValueError if `sub` is
    not one such key in its canonical spelling (threat: one key spelled many ways)."""
    try:
        python_type = key.type.python_type
    except NotImplementedError:
        python_type = None
    if python_type is int:
        return integer_subject
    if python_type is uuid.UUID:
        return _uuid_key
    if python_type is str:
        length = getattr(key.type, "length", None) or MAX_STRING_KEY_LENGTH
        return lambda subject: _string_key(subject, length)
    raise RuntimeError(
        f"AuthManager(user_model=...): the primary key {key} is of type {key.type}; the "
        "extension supports integer, UUID and string keys."
    )


def _uuid_key(subject: str) -> uuid.UUID:
    value = uuid.UUID(subject)
    if str(value) != subject:
        raise ValueError("not a canonical UUID")
    return value


def _string_key(subject: str, length: int) -> str:
    if not subject or len(subject) > length or not subject.isprintable():
        raise ValueError("not a string key")
    return subject
