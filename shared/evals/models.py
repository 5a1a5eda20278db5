"""Request and response models of the evaluation routes (api/evals.py) and the template gate (api/templates.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from shared.evals.sets import CaseIn

Id = Annotated[str, Field(min_length=1, max_length=100)]


class SetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: Id
    name: str = Field(min_length=1, max_length=200)
    run_on_resync: bool = Field(default=False, description="Run the set after each knowledge sync of the assistant")
    cases: list[CaseIn] = Field(default_factory=list, max_length=500)


class SetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    run_on_resync: bool | None = None


class SetPublic(BaseModel):
    id: str
    assistant_id: str
    name: str
    run_on_resync: bool
    active_cases: int
    draft_cases: int
    created_at: datetime
    updated_at: datetime


class SetsPublic(BaseModel):
    data: list[SetPublic]
    count: int


class CasePublic(BaseModel):
    id: str
    question: str
    expected_sources: list[dict[str, str]]
    key_facts: list[str]
    expect_abstain: bool
    tags: list[str]
    status: str = Field(description="active (run) or draft (proposed, not run until accepted)")
    origin: str
    created_at: datetime
    updated_at: datetime


class CasesPublic(BaseModel):
    data: list[CasePublic]
    count: int


class CaseUpdate(BaseModel):
    """Only the fields sent change; `status: "active"` accepts a draft."""

    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(default=None, min_length=1, max_length=8000)
    expected_sources: list[dict[str, Any]] | None = Field(default=None, max_length=20)
    key_facts: list[str] | None = Field(default=None, max_length=20)
    expect_abstain: bool | None = None
    tags: list[str] | None = Field(default=None, max_length=20)
    status: str | None = Field(default=None, pattern="^(active|draft)$")


class DraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=10, ge=0, le=100, description="Section cases to propose")
    offtopic: int = Field(default=3, ge=0, le=6, description="Off-topic cases that must abstain")


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_ids: list[Id] | None = Field(default=None, max_length=2000, description="Default: every draft of the set")


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set_id: Id
    template_version: int | None = Field(default=None, ge=1, le=2_147_483_647, description=(
        "A version of the assistant's template, published or not; default: the one its chats use now"))
    trigger: str = Field(default="manual", pattern="^(manual|cli)$")


class RunPublic(BaseModel):
    id: str
    set_id: str
    assistant_id: str
    template_id: str
    template_version: int
    status: str = Field(description="queued, running, succeeded or failed")
    trigger: str
    cases_total: int | None
    cases_done: int | None
    metrics: dict[str, Any] | None
    alert: dict[str, Any] | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class ResultsPublic(BaseModel):
    data: list[dict[str, Any]]
    count: int



class GateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set_id: str = Field(min_length=1, max_length=100, description="An evaluation set of an assistant on this template")
    tolerances: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=dict, description="Per metric: how much worse a new version may be (see README)")


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    override: bool = Field(default=False, description="Publish although the gate refuses (recorded in the audit log)")
    reason: str | None = Field(default=None, max_length=1000, description="Why, for the audit log")


class PublishOut(BaseModel):
    template_id: str
    published_version: int = Field(description="The version assistants following the template use now")
    verdict: dict[str, Any] = Field(description="The runs compared, failing metrics, whether it was overridden")
