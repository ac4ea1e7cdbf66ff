"""`notify:` (docs/notify.md): where a run's end and a campaign tick's digest are sent.

Trust comes from where a target is written (docs/security.md). A target that runs a command
or reads a secret (``NotifyTarget``) is written only in trusted configuration: the site file
or the user's own ``~/.config/hpcflow/notify.yaml``. A workflow or campaign file (anyone's)
may name such a target, or give a plain webhook with no secret (``PlainWebhook``); nothing
else. A target holds no secret: ``secret_env`` / ``secret_file`` name where it is read at
delivery time, so it never reaches the database or a log."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hpcflow.util.urls import check_webhook

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
TARGET_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
Event = Literal["run_end", "campaign_tick"]
EVENTS: tuple[Event, ...] = ("run_end", "campaign_tick")
USER_FILE = "~/.config/hpcflow/notify.yaml"  # as messages name it ($XDG_CONFIG_HOME honoured)


class NotifyTarget(BaseModel):
    """A target as trusted configuration writes it (the site file, the user's notify.yaml),
    and as the tracker stores it: names of secrets, never their values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        None,
        pattern=TARGET_NAME,
        description="what a workflow or campaign calls it (notify: [NAME])",
    )
    webhook: str | None = Field(
        None,
        description="https URL that gets a POST of the JSON document; '{secret}' in its path or "
        "query is replaced by the secret at delivery (e.g. a Slack hook path)",
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
        None, description="file (mode 0600, yours) whose first line is the secret"
    )
    on: list[Event] = Field(
        default_factory=lambda: list(EVENTS),
        description="which documents this target gets",
    )

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return v if v is None else check_webhook(v)

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

    def stored(self) -> dict[str, Any]:
        """As the tracker keeps it (without its name: two names of one target are one)."""
        return self.model_dump(exclude_none=True, exclude={"name"})

    @property
    def privileged(self) -> bool:
        """Runs something or reads a secret: only trusted configuration may give it."""
        return bool(self.command or self.secret_env or self.secret_file)


class PlainWebhook(BaseModel):
    """What a workflow or campaign file may give inline: a webhook with no secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str = Field(..., description="https URL that gets a POST of the JSON document")
    on: list[Event] = Field(
        default_factory=lambda: list(EVENTS), description="which documents this target gets"
    )

    @model_validator(mode="before")
    @classmethod
    def _untrusted(cls, data: Any) -> Any:
        given = sorted(k for k in ("command", "secret_env", "secret_file") if k in (data or {}))
        if isinstance(data, dict) and given:
            raise ValueError(
                f"a workflow or campaign file cannot give {' or '.join(given)}: define the "
                f"target in your {USER_FILE} (targets: {{team-hook: {{...}}}}) or the site "
                "file, and name it here (notify: [team-hook])"
            )
        return data

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str) -> str:
        check_webhook(v)
        if "{secret}" in v:
            raise ValueError(
                "a workflow or campaign file cannot use {secret}: define the target in "
                f"your {USER_FILE} and name it here"
            )
        return v


def _entry(v: Any) -> Any:
    if isinstance(v, str):
        if not re.fullmatch(TARGET_NAME, v):
            raise ValueError(
                f"{v!r} is not a target name (letters, digits, _ and -); to send to a URL "
                "write {webhook: https://...}"
            )
        return v
    if isinstance(v, dict):
        try:
            return PlainWebhook.model_validate(v)
        except ValidationError as e:
            why = "; ".join(str(x["msg"]).removeprefix("Value error, ") for x in e.errors())
            raise ValueError(why) from None
    if isinstance(v, PlainWebhook):
        return v
    raise ValueError("a notify entry is a target's name or {webhook: https://...}")


# what a workflow or campaign file writes under notify: a trusted target's name, or a plain
# webhook with no secret
NotifyEntry = Annotated[str | PlainWebhook, BeforeValidator(_entry)]


class UnknownTarget(ValueError):
    pass


def resolve(
    entries: list[str | PlainWebhook],
    site: list[NotifyTarget],
    user: dict[str, NotifyTarget],
) -> list[NotifyTarget]:
    """A workflow's or campaign's entries as targets: a name is looked up in the user's
    notify.yaml, then among the site's named targets; a plain webhook stays one."""
    named = {t.name: t for t in site if t.name} | user
    out: list[NotifyTarget] = []
    for e in entries:
        if isinstance(e, PlainWebhook):
            out.append(NotifyTarget(webhook=e.webhook, on=e.on))
        elif e in named:
            out.append(named[e])
        else:
            known = ", ".join(sorted(named)) or "none defined"
            raise UnknownTarget(
                f"notify: no target named {e!r} (known: {known}); define it under targets: "
                f"in your {USER_FILE}, or give {{webhook: https://...}}"
            )
    return out
