"""`notify:` in a site config, workflow or campaign (docs/notify.md): where a run's end and a
campaign tick's digest are sent. A target holds no secret: ``secret_env`` / ``secret_file``
name where the secret is read at delivery time, so it never reaches the database or a log."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
Event = Literal["run_end", "campaign_tick"]
EVENTS: tuple[Event, ...] = ("run_end", "campaign_tick")


class NotifyTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str | None = Field(
        None,
        description="http(s) URL that gets a POST of the JSON document; '{secret}' in it is "
        "replaced by the secret at delivery (e.g. a Slack hook path)",
    )
    command: list[str] | None = Field(
        None,
        description="argv run on the login node with the JSON document on stdin "
        "(e.g. [mail, -s, hpcflow, me@example.org]); the secret, if any, is in its "
        "environment as HPCFLOW_NOTIFY_SECRET, never in its argv",
    )
    secret_env: str | None = Field(
        None, pattern=ENV_NAME, description="environment variable that holds the secret"
    )
    secret_file: str | None = Field(
        None, description="file (mode 0600) whose first line is the secret"
    )
    on: list[Event] = Field(
        default_factory=lambda: list(EVENTS),
        description="which documents this target gets",
    )

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("webhook must be an http:// or https:// URL")
        if u.username or u.password:
            raise ValueError(
                "webhook must not carry credentials: put them in secret_env or secret_file "
                "and write {secret} where they go"
            )
        if re.search(r"[\s\x00-\x1f]", v):
            raise ValueError("webhook must not contain spaces or control characters")
        return v

    @field_validator("command")
    @classmethod
    def _argv(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not a or "\x00" in a or len(a) > 4096 for a in v)):
            raise ValueError("command is a non-empty list of non-empty arguments")
        return v

    @model_validator(mode="after")
    def _one(self) -> NotifyTarget:
        if (self.webhook is None) == (self.command is None):
            raise ValueError("give exactly one of webhook or command")
        if self.secret_env and self.secret_file:
            raise ValueError("give at most one of secret_env or secret_file")
        return self
