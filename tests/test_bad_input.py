"""Values no account can hold are a 400 on every database, never a 5xx, and change nothing
(docs/http-api.md#input). Explicit cases first, then properties over every field and path."""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from datetime import UTC
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import example
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from flask_token_auth.state import auth_state
from flask_token_auth.tokens import issue_access_token
from tests.conftest import PASSWORD
from tests.helpers import bearer
from tests.helpers import claims_of
from tests.helpers import login
from tests.helpers import NATIVE
from tests.helpers import register
from tests.helpers import snapshot

FORMS = {
    "/auth/register": ("email", "password"),
    "/auth/login": ("email", "password"),
    "/auth/refresh": ("refresh_token",),
    "/auth/logout": ("refresh_token",),
    "/auth/password": ("current_password", "new_password"),
}
DEEP = "[" * 5000 + "]" * 5000
PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Every kind of character, lone surrogates, NUL and controls included.
characters = st.characters(categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(characters),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(characters), inner),
    max_leaves=6,
)


@pytest.fixture
def access_token(client: FlaskClient) -> str:
    register(client)
    token: str = login(client, native=True).json["access_token"]
    return token


def post_raw(client: FlaskClient, path: str, body: str, access_token: str) -> Any:
    return client.post(
        path, data=body, content_type="application/json", headers=NATIVE | bearer(access_token)
    )


def assert_refused_without_change(app: Flask, response: Any, before: dict[str, Any]) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_request"
    assert snapshot(app) == before


# --- explicit cases ------------------------------------------------------------------------


@pytest.mark.parametrize("path", FORMS)
def test_deep_nesting_is_a_400(
    app: Flask, client: FlaskClient, access_token: str, path: str
) -> None:
    before = snapshot(app)
    response = post_raw(client, path, '{"email": ' + DEEP + "}", access_token)
    assert_refused_without_change(app, response, before)
    response = post_raw(client, path, DEEP, access_token)
    assert_refused_without_change(app, response, before)


@pytest.mark.parametrize(("path", "field"), [(p, f) for p, fields in FORMS.items() for f in fields])
@pytest.mark.parametrize("bad", ["\\ud800", "\\udfff x", "a\\u0000b"])
def test_nul_and_lone_surrogates_are_a_400(
    app: Flask, client: FlaskClient, access_token: str, path: str, field: str, bad: str
) -> None:
    before = snapshot(app)
    body = json.dumps({name: "ada@example.com" for name in FORMS[path]})
    body = body.replace(f'"{field}": "ada@example.com"', f'"{field}": "{bad}@example.com"')

    response = post_raw(client, path, body, access_token)

    assert_refused_without_change(app, response, before)


@pytest.mark.parametrize("value", [["ada@example.com"], {"a": 1}])
def test_a_list_or_object_value_is_a_400(app: Flask, client: FlaskClient, value: Any) -> None:
    before = snapshot(app)
    response = client.post("/auth/register", json={"email": value, "password": PASSWORD})
    assert_refused_without_change(app, response, before)


@pytest.mark.parametrize("session_id", ["a%00b", "%ED%A0%80", "x" * 65, "a b", "..%2F"])
def test_odd_session_ids_are_a_404(
    app: Flask, client: FlaskClient, access_token: str, session_id: str
) -> None:
    before = snapshot(app)
    response = client.delete(f"/auth/sessions/{session_id}", headers=bearer(access_token))
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert snapshot(app) == before


@pytest.mark.parametrize("subject", [str(2**63), "9" * 40, "٣", "²", "0", "-1"])
def test_a_signed_token_with_an_impossible_subject_is_a_401(
    app: Flask, client: FlaskClient, subject: str
) -> None:
    with app.app_context():
        state = auth_state()
        token = issue_access_token(
            keys=state.keys,
            settings=state.settings,
            user_id=1,
            role="user",
            session_id="s",
            now=datetime.now(UTC),
        )
    # Re-sign the same claims with another subject, as only a key holder could.
    with app.app_context():
        claims = claims_of(token)
        headers = jwt.get_unverified_header(token)
        forged = jwt.encode(
            claims | {"sub": subject}, state.keys.signing_key, algorithm="HS256", headers=headers
        )
    response = client.get("/auth/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"


# --- look-alike emails ---------------------------------------------------------------------

ACCOUNT = "josé@example.com"


@pytest.mark.parametrize(
    "spelling",
    [
        unicodedata.normalize("NFD", ACCOUNT),
        "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in ACCOUNT),
        "  JOSÉ@Example.com ",
    ],
)
def test_visually_identical_spellings_are_one_account(
    app: Flask, client: FlaskClient, spelling: str
) -> None:
    register(client, ACCOUNT)
    duplicate = client.post("/auth/register", json={"email": spelling, "password": PASSWORD})
    assert duplicate.status_code == 409
    assert login(client, spelling).status_code == 200


@pytest.mark.parametrize(
    "spelling",
    ["jo\u200bsé@example.com", "jo\u00adsé@example.com", "\ufeffjosé@example.com", "jo\x1bsé@a.b"],
)
def test_invisible_and_control_characters_are_refused(
    app: Flask, client: FlaskClient, spelling: str
) -> None:
    before = snapshot(app)
    response = client.post("/auth/register", json={"email": spelling, "password": PASSWORD})
    assert_refused_without_change(app, response, before)


# --- properties ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("path", FORMS)
def test_no_form_value_is_a_server_error(
    app: Flask, client: FlaskClient, access_token: str, path: str
) -> None:
    fields = FORMS[path]

    @PROPERTY_SETTINGS
    @given(
        body=st.fixed_dictionaries({}, optional={field: json_values for field in fields}).flatmap(
            lambda known: st.dictionaries(st.text(characters), json_values, max_size=2).map(
                lambda extra: extra | known
            )
        )
    )
    @example(body={fields[0]: "\ud800"})
    @example(body={fields[0]: "\x00"})
    def check(body: dict[str, Any]) -> None:
        before = snapshot(app)
        response = client.post(path, json=body, headers=NATIVE | bearer(access_token))
        assert response.status_code < 500, response.get_data(as_text=True)
        if response.status_code == 400:
            assert snapshot(app) == before

    check()


@pytest.mark.slow
def test_no_session_id_is_a_server_error(
    app: Flask, client: FlaskClient, access_token: str
) -> None:
    @PROPERTY_SETTINGS
    @given(session_id=st.text(st.characters(exclude_categories=["Cs"]), min_size=1))
    @example(session_id="\x00")
    def check(session_id: str) -> None:
        before = snapshot(app)
        path = "/auth/sessions/" + quote(session_id, safe="")
        response = client.delete(path, headers=bearer(access_token))
        assert response.status_code in (404, 405), response.get_data(as_text=True)
        assert snapshot(app) == before

    check()
