"""The OpenAPI document matches the routes, and Schemathesis finds no 5xx and no answer
outside it, anonymous and authenticated, on every database."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from schemathesis.checks import content_type_conformance
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance

from flask_token_auth.state import auth_state
from flask_token_auth.transport import csrf_cookie_name
from tests.helpers import login
from tests.helpers import register
from tests.helpers import set_cookies

EXAMPLES_PER_OPERATION = 25


def test_the_document_lists_exactly_the_routes(app: Flask) -> None:
    document = app.test_client().get("/auth/openapi.json").json
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    routed = {
        (rule.rule.replace("<", "{").replace(">", "}"), method)
        for rule in app.url_map.iter_rules()
        # Every route of the blueprint but the one that answers 404 and 405 for the others.
        if rule.endpoint.startswith("token_auth.") and rule.endpoint != "token_auth._unknown_path"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert documented == routed
    assert document["openapi"] == "3.1.0"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "app_config",
    [{}, {"AUTH_COOKIE_SECURE": False}, {"AUTH_COOKIE_DOMAIN": "example.com"}],
    ids=["secure host-only", "plain http", "a domain"],
)
def test_refresh_and_logout_declare_the_cookie_transport(app: Flask) -> None:
    """The refresh cookie, the CSRF cookie under the name the app sets, and the X-CSRF-Token
    header; logout's credentials: the access token, or the cookies and the header, or the
    body's token (no scheme)."""
    client = app.test_client()
    register(client)
    csrf_cookie = csrf_cookie_name(auth_state(app))
    assert {"refresh_token", csrf_cookie} <= set(set_cookies(login(client)))
    document = client.get("/auth/openapi.json").json
    cookie_transport = {
        ("cookie", "refresh_token"),
        ("cookie", csrf_cookie),
        ("header", "X-CSRF-Token"),
    }
    for path in ("/auth/refresh", "/auth/logout"):
        parameters = document["paths"][path]["post"]["parameters"]
        declared = {(parameter["in"], parameter["name"]) for parameter in parameters}
        assert cookie_transport <= declared, path
        assert not any(parameter["required"] for parameter in parameters)  # or the body's
    schemes = document["components"]["securitySchemes"]
    assert {
        name: schemes[name] for name in ("bearer", "refreshCookie", "csrfCookie", "csrfHeader")
    } == {
        "bearer": {"type": "http", "scheme": "bearer"},
        "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "refresh_token"},
        "csrfCookie": {"type": "apiKey", "in": "cookie", "name": csrf_cookie},
        "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
    }
    assert document["paths"]["/auth/logout"]["post"]["security"] == [
        {"bearer": []},
        {"refreshCookie": [], "csrfCookie": [], "csrfHeader": []},
        {},
    ]
    assert "security" not in document["paths"]["/auth/refresh"]["post"]


@pytest.mark.slow
def test_every_answer_is_documented_and_none_is_a_server_error(app: Flask) -> None:
    register(app.test_client())
    schema = schemathesis.openapi.from_wsgi("/auth/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation but the document's own, which Schemathesis leaves out.
    assert len(operations) == len(app.test_client().get("/auth/openapi.json").json["paths"]) - 1

    for operation in operations:
        check_operation(app, operation, secured="security" in operation.definition.raw)


def check_operation(app: Flask, operation: Any, *, secured: bool) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        # A fresh session for each case: an earlier case may have logged out or changed it.
        access_token = login(app.test_client(), native=True).json["access_token"]
        case.call_and_validate(
            app=app,
            headers={"Authorization": f"Bearer {access_token}"} if secured else {},
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    check()
