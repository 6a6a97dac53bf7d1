"""Dependencies shared by the REST routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth import AuthError, Principal
from gateway.resources import Resources

__all__ = ["Caller", "bearer_principal"]

_bearer = HTTPBearer(auto_error=False, description="JWT issued for this gateway's audience")


def bearer_principal(
    res: Resources,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller; 401 for a missing or bad token (the token is never echoed)."""
    if credentials is None:
        res.metrics.counter("auth_failures").labels("rest").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return res.verifier.verify(credentials.credentials)
    except AuthError as exc:
        res.metrics.counter("auth_failures").labels("rest").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None


Caller = Annotated[Principal, Depends(bearer_principal)]
