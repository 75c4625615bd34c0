"""The rules service's pure domain: no database, no gRPC."""

from typing import Any

#: A JSON value as partners send it and the database stores it (event data, attributes,
#: triggers, declared properties): the one truly dynamic type.
Json = Any
