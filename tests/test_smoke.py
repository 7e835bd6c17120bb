from flask.testing import FlaskClient

from tests.helpers import bearer
from tests.helpers import login
from tests.helpers import register


def test_login_and_me(client: FlaskClient) -> None:
    register(client)
    access_token = login(client).json["access_token"]
    response = client.get("/auth/me", headers=bearer(access_token))
    assert response.status_code == 200
