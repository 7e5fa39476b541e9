"""The workflow definition language: triggers, steps and policies as pydantic models (services.workflows parses,
validates and stores them)."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.masking import compile_path

ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
TEMPLATE = re.compile(r"\{\{\s*(.+?)\s*\}\}")
RESERVED_FIELDS = ("trigger", "steps", "event", "secret")


class EventTrigger(BaseModel):
    """Start on accepted events whose source and type match fnmatch-style patterns."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["event"]
    source: str = "*"
    event_type: str = "*"


class ScheduleTrigger(BaseModel):
    """Start on a cron schedule (five fields, UTC)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["schedule"]
    cron: str


class ManualTrigger(BaseModel):
    """Start only through the run endpoint."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["manual"]


class StepBase(BaseModel):
    """Retry and timeout settings every step has."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=ID)
    max_attempts: int = Field(default=1, ge=1, le=20)
    backoff_seconds: float = Field(default=0.0, ge=0, le=3600)
    backoff_multiplier: float = Field(default=2.0, ge=1, le=10)
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)


class ActionStep(StepBase):
    """An HTTP request to a downstream system, or a Python callable registered by entry point."""

    type: Literal["action"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    request_id_header: str | None = None
    callable: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> ActionStep:
        if (self.url is None) == (self.callable is None):
            raise ValueError("an action needs exactly one of url or callable")
        return self


class ConditionStep(StepBase):
    """A JMESPath expression over the context; when falsy the following steps are skipped."""

    type: Literal["condition"]
    expression: str


class TransformStep(StepBase):
    """New context fields, each a JMESPath expression over the context."""

    type: Literal["transform"]
    fields: dict[str, str] = Field(min_length=1)


class WaitStep(StepBase):
    """A delay that holds no worker thread while it lasts."""

    type: Literal["wait"]
    seconds: float = Field(gt=0, le=30 * 86400)


Step = Annotated[ActionStep | ConditionStep | TransformStep | WaitStep, Field(discriminator="type")]
Trigger = Annotated[EventTrigger | ScheduleTrigger | ManualTrigger, Field(discriminator="type")]


class MaskingRules(BaseModel):
    """Extra sensitive fields of this workflow, masked on top of the global rules."""

    model_config = ConfigDict(extra="forbid")
    keys: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _paths_parse(self) -> MaskingRules:
        for path in self.paths:
            compile_path(path)  # raises ValueError naming the bad path
        return self


class PayloadPolicyModel(BaseModel):
    """How much of each payload this workflow keeps: full, summary (keys, sizes, hashes) or off."""

    model_config = ConfigDict(extra="forbid")
    log_payload: Literal["full", "summary", "off"] = "full"
    max_payload_bytes: int | None = Field(default=None, ge=1)


class Definition(BaseModel):
    """A whole workflow definition as submitted."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID)
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    trigger: Trigger
    steps: list[Step] = Field(min_length=1, max_length=100)
    retention_days: int | None = Field(default=None, ge=7, le=3650)
    retain_on_failure: bool = False
    legal_hold: bool = False
    masking: MaskingRules | None = None
    payload_policy: PayloadPolicyModel | None = None
