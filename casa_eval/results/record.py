"""The base of every model in the results document.

- Unknown fields are an error in a document of this casa-eval's schema, and ignored in a document of a newer
  minor version (which may only add optional fields): `load_results` passes `NEWER_MINOR` as validation
  context for those.
- Non-finite floats (a NaN metric, an infinite ratio) are written as the strings "NaN", "Infinity",
  "-Infinity" and read back as floats, instead of JSON null, which a float field would refuse.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

NEWER_MINOR = "newer_minor"


class ResultRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    @model_validator(mode="before")
    @classmethod
    def _ignore_fields_of_a_newer_minor(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get(NEWER_MINOR):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data
