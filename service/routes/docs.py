"""The OpenAPI schema and its two viewers, behind the token like every route but the
probes (FastAPI's own would answer anyone)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from service.routes import require_token

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_token)])
SCHEMA = "/openapi.json"


@router.get(SCHEMA)
async def schema(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=SCHEMA, title=f"{request.app.title} - Swagger UI")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=SCHEMA, title=f"{request.app.title} - ReDoc")
