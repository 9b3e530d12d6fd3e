"""The OpenAPI schema and Swagger UI, behind the token like every route but the probes
(FastAPI's own would answer anyone). Swagger UI's files come from the package
(service/routes/root.py), not from a CDN: the page works on a device without internet."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from service.routes import require_token

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_token)])
SCHEMA = "/openapi.json"


@router.get(SCHEMA)
async def schema(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=SCHEMA,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url="/docs/swagger-ui-bundle.js",
        swagger_css_url="/docs/swagger-ui.css",
        swagger_favicon_url="/docs/favicon-32x32.png",
        # No badge from the public validator service: nothing leaves the device.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
async def redoc() -> RedirectResponse:
    """One viewer ships with the daemon; the old ReDoc address leads to it."""
    return RedirectResponse("docs", 307)
