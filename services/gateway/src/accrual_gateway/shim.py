"""The names ``openapi.py`` imports from the gateway's former one-module shim; the code
lives in :mod:`accrual_gateway.codec` and :mod:`accrual_gateway.routing`."""

from accrual_gateway.codec import WKT_PASSTHROUGH, enum_prefix, is_hidden
from accrual_gateway.routing import Route

__all__ = ["WKT_PASSTHROUGH", "Route", "enum_prefix", "is_hidden"]
