"""A FastAPI resource server for the tokens of flask-token-auth (docs/resource-servers.md).

/introspected/me asks the auth server about each token (RFC 7662): a token whose session was
revoked is refused at once, for one request to the auth server per call. /jwks/me verifies the
token alone with the published keys: no such request, but a revoked session's token works
there until it expires.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies from the annotations,
# and those of the routes name functions local to create_resource_server.
from typing import Annotated
from typing import Any

import httpx
import jwt
from fastapi import Depends
from fastapi import FastAPI
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security import HTTPBearer

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def create_resource_server(
    *, auth_url: str, client_id: str, client_secret: str, issuer: str, audience: str, algorithm: str
) -> FastAPI:
    # RFC 6749 section 2.3.1: httpx sends the id and secret with HTTP Basic.
    auth_server = httpx.Client(base_url=auth_url, auth=(client_id, client_secret), timeout=5)
    jwks = jwt.PyJWKClient(f"{auth_url}/jwks.json")

    def introspected(credentials: Credentials) -> dict[str, Any]:
        token = _token(credentials)
        try:
            response = auth_server.post("/introspect", data={"token": token})
            response.raise_for_status()
        except httpx.HTTPError:
            raise HTTPException(503, "the auth server cannot be asked") from None
        answer: dict[str, Any] = response.json()
        if answer.get("active") is not True:
            raise _refusal()
        return answer

    def verified(credentials: Credentials) -> dict[str, Any]:
        token = _token(credentials)
        try:
            key = jwks.get_signing_key_from_jwt(token).key
            decoded = jwt.decode_complete(
                token, key, algorithms=[algorithm], issuer=issuer, audience=audience
            )
        except jwt.PyJWTError:
            raise _refusal() from None
        if decoded["header"].get("typ") != "at+jwt":
            raise _refusal()
        claims: dict[str, Any] = decoded["payload"]
        return claims

    app = FastAPI()

    @app.get("/introspected/me")
    def introspected_me(claims: Annotated[dict[str, Any], Depends(introspected)]) -> Any:
        return {name: claims[name] for name in ("sub", "sid", "role")}

    @app.get("/jwks/me")
    def verified_me(claims: Annotated[dict[str, Any], Depends(verified)]) -> Any:
        return {name: claims[name] for name in ("sub", "sid", "role")}

    return app


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise _refusal()
    return credentials.credentials


def _refusal() -> HTTPException:
    return HTTPException(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"})
