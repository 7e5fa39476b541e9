"""Settings: one pydantic-settings class, read from FLOWLEDGER_* variables and DATABASE_URL."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Effective configuration of one Flowledger process."""

    model_config = SettingsConfigDict(env_prefix="FLOWLEDGER_", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "FLOWLEDGER_DATABASE_URL")
    )
    data_dir: Path = Path(".flowledger")
    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=8, ge=1, le=256)
    public_url: str = ""
    secret_key: SecretStr | None = None

    owner_role: str = Field(default="flowledger_owner", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    writer_role: str = Field(default="flowledger_writer", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    reader_role: str = Field(default="flowledger_reader", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    maintainer_role: str = Field(default="flowledger_maintainer", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    writer_password: SecretStr | None = None
    reader_password: SecretStr | None = None
    maintainer_password: SecretStr | None = None

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # A batch of 100 executions x 10 steps with 1-8 KB inputs and outputs is about 9-11 MB of JSON.
    max_batch_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    max_json_depth: int = Field(default=200, ge=1, le=900)
    inline_payload_max_bytes: int = Field(default=1024 * 1024, ge=1)
    masking_keys: list[str] = Field(
        default_factory=lambda: [
            "password", "passwd", "secret", "token", "access_token", "refresh_token", "api_key",
            "apikey", "authorization", "card_number", "cvv", "ssn",
        ]
    )
    masking_paths: list[str] = Field(default_factory=list)

    object_store_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"

    otlp_endpoint: str = ""
    otlp_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    otlp_running_delay_seconds: float = Field(default=30.0, ge=0)
    otlp_drain_interval_seconds: float = Field(default=2.0, gt=0)
    opensearch_url: str = ""
    opensearch_index_prefix: str = Field(default="flowledger", pattern=r"^[a-z0-9][a-z0-9_-]{0,60}$")
    opensearch_batch_size: int = Field(default=500, ge=1, le=10000)
    opensearch_index_interval_seconds: int = Field(default=10, ge=1)
    opensearch_verify_certs: bool = True
    opensearch_ca_certs: str = ""

    runner_threads: int = Field(default=8, ge=1, le=256)
    workflow_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    request_id_header: str = "X-Request-Id"
    replay_workers: int = Field(default=4, ge=1, le=64)
    replay_lease_seconds: float = Field(default=300.0, gt=0)
    scheduler_enabled: bool = True
    scheduler_leader_poll_seconds: float = Field(default=10.0, gt=0)  # how fast a standby takes over a dead leader
    scheduler_job_intervals: dict[str, int] = Field(default_factory=dict)  # job -> seconds, replaces its trigger
    hot_days: int = Field(default=90, ge=1)
    glacier_days: int = Field(default=365, ge=1)
    audit_retention_days: int = Field(default=30, ge=1)
    failure_rate_threshold: float = Field(default=0.05, gt=0, lt=1)
    alert_min_executions: int = Field(default=20, ge=1)
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    pagerduty_routing_key: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    mail_from: str = "flowledger@localhost"
    report_recipients: list[str] = Field(default_factory=list)
    report_cron: str = "0 7 * * 1"  # weekly summary: Mondays 07:00 UTC
    missed_run_grace_minutes: int = Field(default=15, ge=1)
    ingest_rate_limit: float = Field(default=0, ge=0)  # requests/s per source; 0 = no limit
    ingest_rate_burst: int = Field(default=0, ge=0)  # bucket size; 0 = twice the rate
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    login_max_failures: int = Field(default=5, ge=1)
    session_hours: int = Field(default=12, ge=1)
    seal_interval_minutes: int = Field(default=60, ge=1)
    seal_lock_days: int = Field(default=2555, ge=0)  # Object Lock retention of published seals; 0 = none

    @field_validator("report_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from app.scheduler import crontab

        try:
            crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a 5-field crontab expression ({exc})") from exc
        return value

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is set and serve starts its own PostgreSQL."""
        return self.database_url is None

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def dashboard_url(self) -> str:
        """Where users open the dashboard: the public URL, else where serve listens (no trailing slash)."""
        return self.public_url.rstrip("/") if self.public_url else self.listen_url

    @property
    def listen_url(self) -> str:
        """Where serve listens, as a URL this machine can open: a wildcard bind (0.0.0.0, ::) through loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def redacted(self) -> dict[str, Any]:
        """Every setting with secrets replaced by '***' (also passwords inside URLs)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = redact_url(value.get_secret_value()) if name == "database_url" else "***"
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            out[name] = value
        return out


def redact_url(url: str) -> str:
    """Hide the password of a URL such as postgresql://user:pw@host/db."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)
