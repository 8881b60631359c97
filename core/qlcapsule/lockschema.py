"""capsule.lock as pydantic models: the published JSON Schema (``qlcapsule schema lock``).

The tool itself parses locks with the hand-written checks in lock.py (so that
verify never imports pydantic); tests/core/test_lock.py keeps both in agreement.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .lock import HEX64


class LockEntrySchema(BaseModel):
    model_config = ConfigDict(extra="forbid", title="LockEntry")
    path: str = Field(description="capsule-relative POSIX path; no '..', '.', empty segments, leading '/' or '\\\\'")
    sha256: str = Field(pattern=HEX64)
    size: int = Field(ge=0)
    mode: Literal["644", "755"]


class LockSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", title="capsule.lock")
    lockVersion: Literal[1] = 1  # noqa: N815
    algorithm: Literal["sha256"] = "sha256"
    name: str
    version: str
    digest: str = Field(pattern=HEX64, description="sha256 of the JCS (RFC 8785) encoding of `files`")
    files: list[LockEntrySchema] = Field(description="sorted by the UTF-8 bytes of path; no duplicates")


def lock_schema() -> dict[str, Any]:
    schema = LockSchema.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["required"] = sorted(LockSchema.model_fields)
    return schema
