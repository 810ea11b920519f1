"""Every admin route of the app, found by walking `app.routes`, refuses whoever it must:
each admin API route a missing token, a tenant's key and a wrong token (401/403
problem+json); each page a visitor with no session (303 to the login); each page form
a missing or forged CSRF token (403). A new admin route without the checks fails here."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from api.admin_auth import require_admin
from api.admin_session import checked_form, require_session
from api.app import create_app
from tests.conftest import Client
from tests.stack import ADMIN_TOKEN, Stack

# The way in to the page: the only admin routes open to a visitor with no credentials.
LOGIN = {("GET", "/admin"), ("GET", "/admin/login"), ("POST", "/admin/login")}


def _admin_routes() -> list[tuple[str, str, bool]]:
    """(method, path, is part of the JSON API) for every admin route of the app. FastAPI
    keeps an included router as one entry of `app.routes`; its routes, with their full
    paths, are the route contexts."""
    found = []
    for route in iter_route_contexts(create_app().routes):
        path: str = getattr(route, "path", "")
        if not path.startswith("/admin"):
            continue
        methods = getattr(route, "methods", None)
        assert methods, f"{path}: an admin route this walk cannot probe ({type(route)})"
        in_api = bool(getattr(route, "include_in_schema", False))
        found += [(m, path, in_api) for m in sorted(methods - {"HEAD"})]
    return found


def _concrete(path: str) -> str:
    """A path with its parameters filled in (ids that match nothing)."""
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


ROUTES = _admin_routes()
API = [(m, p) for m, p, in_api in ROUTES if in_api]
PAGES = [(m, p) for m, p, in_api in ROUTES if not in_api and (m, p) not in LOGIN]


def test_the_walk_finds_the_admin_routes() -> None:
    assert ("POST", "/admin/jobs/rerun") in API
    assert ("PATCH", "/admin/tenants/{ref}") in API
    assert ("POST", "/admin/ui/jobs/{job_id}/rerun") in PAGES
    assert ("GET", "/admin/ui/tenants") in PAGES
    assert ("GET", "/admin/ui/prompts/{tenant_id}/{name}") in PAGES
    assert {(m, p) for m, p, _ in ROUTES} >= LOGIN


def _declared(method: str, path: str) -> set[object]:
    for route in iter_route_contexts(create_app().routes):
        if route.path == path and method in (route.methods or ()):
            return {dependency.dependency for dependency in route.dependencies}
    raise AssertionError(f"no route {method} {path}")


def test_the_checks_are_declared_by_the_routers() -> None:
    """Each check is a dependency of its router (`APIRouter(dependencies=[...])`): a route
    gets it by being there, not by remembering a parameter."""
    for method, path in API:
        assert require_admin in _declared(method, path), (method, path)
    for method, path in PAGES:
        check = checked_form if method == "POST" else require_session
        assert check in _declared(method, path), (method, path)


def _problem(response: httpx.Response, status: set[int]) -> None:
    assert response.status_code in status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), API)
def test_each_admin_api_route_needs_the_admin_token(
    method: str, path: str, live: Stack, client: Client
) -> None:
    url = live.base_url + _concrete(path)
    body: dict[str, str] | None = {} if method in ("POST", "PATCH", "PUT") else None
    _problem(httpx.request(method, url, json=body), {401})
    tenant = {"Authorization": f"Bearer {client.api_key}"}
    _problem(httpx.request(method, url, json=body, headers=tenant), {401, 403})
    wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}x"}
    _problem(httpx.request(method, url, json=body, headers=wrong), {403})
    # A page session is no admin token either.
    session = _logged_in(live)
    _problem(session.request(method, _concrete(path), json=body), {401})


def _logged_in(live: Stack) -> httpx.Client:
    http = httpx.Client(base_url=live.base_url, timeout=30)
    response = http.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 303 and response.headers["location"] == "/admin/"
    return http


@pytest.fixture
def page_session(live: Stack) -> Iterator[httpx.Client]:
    http = _logged_in(live)
    yield http
    http.close()


@pytest.mark.parametrize(("method", "path"), PAGES)
def test_each_admin_page_needs_a_session_and_each_form_its_csrf_token(
    method: str, path: str, live: Stack, client: Client, page_session: httpx.Client
) -> None:
    url = _concrete(path)
    anonymous = httpx.request(method, live.base_url + url, data={"csrf": "forged"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/admin/login"
    # Neither the admin token as a bearer nor a tenant key is a session.
    for bearer in (ADMIN_TOKEN, client.api_key):
        headers = {"Authorization": f"Bearer {bearer}"}
        response = httpx.request(method, live.base_url + url, headers=headers)
        assert response.status_code == 303, (bearer == ADMIN_TOKEN, response.text)
    if method == "GET":
        return
    assert method == "POST", f"{method} {path}: a page route neither GET nor POST"
    for form in ({}, {"csrf": ""}, {"csrf": "forged"}, {"job": str(uuid.uuid4())}):
        refused = page_session.post(url, data=form)
        assert refused.status_code == 403, (form, refused.text)
