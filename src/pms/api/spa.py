"""The staff web app (frontend/, a React SPA): its OAuth client and its files.

The app is an ordinary SMART public client (authorization code + PKCE) of our own authorization server:
`register_client` keeps its registration current at every start, so `make run` needs no manual step.
`router` serves the built files at `/` and answers the app's client-side routes (`/patients/123`, ...)
with `index.html`; it is included last, so every API route (`/fhir`, `/oauth2`, `/health`, `/docs`,
`/.well-known`) wins, and those prefixes are never answered with the app.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException

from pms.config import Settings
from pms.storage import identity

SPA_NAME = "PMS staff web app"
SPA_SCOPES = ("openid", "fhirUser", "offline_access", "online_access", "user/*.*")
CALLBACK_PATH = "/callback"
DEV_SERVER_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")  # `npm run dev` (vite)
# Paths that belong to the API: never answered with the app, even when no route matches.
RESERVED_PREFIXES = ("fhir", "oauth2", "health", "docs", "redoc", "openapi.json", ".well-known", "api")
# A source checkout (`make run`): frontend/dist beside src/; an installed package (the Docker image):
# frontend/dist under the working directory.
SOURCE_DIST = Path(__file__).resolve().parents[3] / "frontend" / "dist"


def redirect_uris(settings: Settings) -> list[str]:
    """Where the app may receive its authorization code: `{public root}/callback`. Without a configured
    public base URL (local use), the bound host and port under both loopback names, and the dev server."""
    uris: list[str] = []
    if settings.base_url:
        base = settings.base_url.rstrip("/")
        root = base[: -len("/fhir")] if base.endswith("/fhir") else base
        uris.append(root + CALLBACK_PATH)
    else:
        hosts = {settings.host, "127.0.0.1", "localhost"} - {"0.0.0.0", "::", ""}
        uris += [f"http://{host}:{settings.port}{CALLBACK_PATH}" for host in sorted(hosts)]
        uris += [origin + CALLBACK_PATH for origin in DEV_SERVER_ORIGINS]
    uris += [uri for uri in settings.spa_redirect_uris if uri not in uris]
    return uris


async def register_client(conn: AsyncConnection, settings: Settings) -> identity.Client:
    return await identity.ensure_public_client(
        conn,
        client_id=settings.spa_client_id,
        name=SPA_NAME,
        scopes=SPA_SCOPES,
        redirect_uris=redirect_uris(settings),
        now=datetime.now(UTC),
    )


def dist_dir(settings: Settings) -> Path:
    if settings.spa_dir:
        return Path(settings.spa_dir)
    if SOURCE_DIST.is_dir():
        return SOURCE_DIST
    return Path.cwd() / "frontend" / "dist"


router = APIRouter(include_in_schema=False)

_NOT_BUILT = (
    "The staff web app is not built: run `make frontend` (or `cd frontend && npm ci && npm run build`)."
)


@router.get("/{path:path}")
async def app_files(request: Request, path: str) -> Response:
    if path.split("/", 1)[0] in RESERVED_PREFIXES:
        raise HTTPException(404)  # the API's own 404 (an OperationOutcome), as if this route did not exist
    settings: Settings = request.app.state.settings
    root = dist_dir(settings).resolve()
    index = root / "index.html"
    if path:
        candidate = (root / path).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            # Vite's hashed assets never change under their name; everything else is revalidated.
            immutable = path.startswith("assets/")
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return FileResponse(candidate, headers={"Cache-Control": cache})
        if path.startswith("assets/") or "." in path.rsplit("/", 1)[-1]:
            raise HTTPException(404)  # a missing file, not a client-side route
    if not index.is_file():
        return PlainTextResponse(_NOT_BUILT, status_code=404)
    return FileResponse(index, headers={"Cache-Control": "no-cache"})
