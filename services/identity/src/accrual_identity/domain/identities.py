"""Identity normalisation lives in ``accrual_platform.identities`` because ingest validates
CDP identities (422 on a malformed email or phone) with exactly the same rules; this module
keeps the identity service's own import path."""

from accrual_platform.identities import (
    DEFAULT_REGION,
    MAX_LENGTH,
    PRECEDENCE,
    Identity,
    IdentityType,
    InvalidIdentity,
    by_precedence,
    normalize,
)

__all__ = ["DEFAULT_REGION", "MAX_LENGTH", "PRECEDENCE", "Identity", "IdentityType", "InvalidIdentity",
           "by_precedence", "normalize"]
