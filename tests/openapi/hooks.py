"""Schemathesis hooks for exbind's OpenAPI check (loaded through SCHEMATHESIS_HOOKS).

`POST /_exbind/v1/seed` takes a TOML document as `application/toml` (any non-JSON
Content-Type is read as TOML): send generated strings for it as text.
"""

import schemathesis

schemathesis.serializer.alias("application/toml", "text/plain")
