"""The dashboard (static files, no build step) and, in dev mode only, its throwaway token."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from gateway.resources import Resources

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The live dashboard."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/v1/dev-token", include_in_schema=False)
async def dev_token(res: Resources) -> dict[str, str]:
    """The dev-mode token for the local demo's dashboard (404 outside dev mode)."""
    if res.dev_token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not in dev mode")
    return {"token": res.dev_token}
