"""Turns settings into running parts: the database (embedded or external) and its roles."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.settings import Settings
from migrations import Roles
from services import db
from services.errors import ConfigurationError
from services.objectstore import open_store
from services.payloads import PayloadConfig


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; a bad value becomes one line naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first.get("loc") else "setting"
        env = name if name == "DATABASE_URL" else f"FLOWLEDGER_{name.upper()}"
        raise ConfigurationError(f"{env}: {first['msg']}") from None


def roles_of(settings: Settings) -> Roles:
    """The role names configured for this deployment."""
    return Roles(owner=settings.owner_role, writer=settings.writer_role,
                 reader=settings.reader_role, maintainer=settings.maintainer_role)


@dataclass
class Runtime:
    """The database a process uses, and the embedded server it started, if any."""

    settings: Settings
    database: db.Database
    embedded: db.EmbeddedServer | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def payloads(self) -> PayloadConfig:
        """Payload storage settings and the object store, built once per process."""
        if "payloads" not in self.extras:
            s = self.settings
            store = open_store(s.object_store_url, local_root=s.objects_dir, endpoint_url=s.s3_endpoint_url,
                               region=s.s3_region)
            self.extras["payloads"] = PayloadConfig(
                store=store, masking_keys=tuple(s.masking_keys), masking_paths=tuple(s.masking_paths),
                inline_max_bytes=s.inline_payload_max_bytes)
        return self.extras["payloads"]

    def close(self) -> None:
        """Release connections and stop an embedded server this runtime started."""
        self.database.dispose()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def database_for(settings: Settings, admin_url: Any) -> db.Database:
    """A Database for the given admin URL with the configured roles and passwords."""
    passwords = {
        key: (secret.get_secret_value() if secret else None)
        for key, secret in (("writer", settings.writer_password), ("reader", settings.reader_password),
                            ("maintainer", settings.maintainer_password))
    }
    return db.Database(admin_url=admin_url, roles=roles_of(settings), passwords=passwords,
                       pool_size=max(4, settings.threads + 2))


def start(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Start or reach the database, migrate it, and return the runtime (raises ConfigurationError)."""
    db.check_data_dir(settings.data_dir)
    embedded = None
    if settings.database_url is None:
        embedded = db.EmbeddedServer(settings.data_dir.resolve() / "pgdata")
        try:
            admin_url = embedded.start()
        except Exception as exc:  # the wheel raises subprocess and OS errors of many kinds
            raise ConfigurationError(
                f"FLOWLEDGER_DATA_DIR={settings.data_dir}: embedded PostgreSQL failed to start "
                f"({type(exc).__name__}: {exc}); see {settings.data_dir}/pgdata/log") from None
    else:
        admin_url = db.normalise_url(settings.database_url.get_secret_value())
    runtime = Runtime(settings=settings, database=database_for(settings, admin_url), embedded=embedded)
    try:
        if migrate:
            runtime.database.migrate()
        else:
            runtime.database.check_reachable()
    except db.DatabaseUnavailable as exc:
        runtime.close()
        where = "DATABASE_URL" if settings.database_url else "embedded PostgreSQL"
        raise ConfigurationError(f"{where}: {exc}") from None
    return runtime
