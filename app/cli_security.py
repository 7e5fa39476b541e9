"""CLI for security: `token create/list/revoke`, `user create/list/disable/enable/set-role`, `seal`, `verify`."""
from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click
import sqlalchemy as sa

from app.runtime import Runtime, load_settings, start
from services import admin_audit, deletion, seal_verify, sealing, tokens, users


@contextmanager
def _runtime() -> Iterator[Runtime]:
    runtime = start(load_settings(), migrate=True)
    try:
        yield runtime
    finally:
        runtime.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _audit(conn, action: str, target: str, detail: dict | None = None) -> None:  # noqa: ANN001
    admin_audit.record(conn, actor=_actor(), action=action, target=target, detail=detail, remote_addr="local")


@click.group("token")
def token_group() -> None:
    """Ingestion tokens per source system."""


@token_group.command("create")
@click.option("--source", "source", required=True, help="Source system the token may post events for.")
@click.option("--name", default=None, help="A label, e.g. who holds it.")
@click.option("--signed", is_flag=True, help="Also issue a webhook signing secret (Standard Webhooks / sha256=).")
def token_create(source: str, name: str | None, signed: bool) -> None:
    """Create a token; its secret is printed once and never again."""
    with _runtime() as rt, rt.database.writer() as conn:
        issued = tokens.create_ingest_token(conn, source_system=source, created_by=_actor(), now=_now(), name=name,
                                            signed=signed)
        _audit(conn, "token.create", str(issued.token.token_id), {"source_system": source, "signed": signed})
    click.echo(f"token id      {issued.token.token_id}")
    click.echo(f"source        {source}")
    click.echo(f"token         {issued.secret}")
    if issued.signing_secret:
        click.echo(f"signing key   {issued.signing_secret}")
    click.echo("Store it now: it is shown only once. Send it as 'Authorization: Bearer <token>'"
               + (" or sign requests with the signing key." if signed else "."), err=True)


@token_group.command("list")
@click.option("--source", default=None)
@click.option("--json", "as_json", is_flag=True)
def token_list(source: str | None, as_json: bool) -> None:
    """Tokens with their prefix, source, last use and revocation (never the secret)."""
    with _runtime() as rt, rt.database.writer() as conn:
        found = tokens.list_tokens(conn, source_system=source)
    if as_json:
        click.echo(json.dumps([t.public() for t in found], indent=2, default=str))
        return
    for t in found:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        who = t.source_system or f"user {t.user_id}"
        click.echo(f"{t.token_id}  {t.kind:6}  {who:20}  {t.prefix}…  last used {used:16}  {state}")


@token_group.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by id (or a unique id prefix)."""
    with _runtime() as rt, rt.database.writer() as conn:
        token = tokens.revoke_token(conn, token_id=token_id, now=_now())
        _audit(conn, "token.revoke", str(token.token_id))
    click.echo(f"revoked {token.token_id} ({token.source_system or 'user token'})")


@click.group("user")
def user_group() -> None:
    """Dashboard and API users."""


@user_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(users.ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def user_create(username: str, role: str, password_stdin: bool) -> None:
    """Create a user; the password is prompted for (never an argument: it would land in shell history)."""
    password = _read_password(password_stdin)
    with _runtime() as rt, rt.database.writer() as conn:
        user = users.create_user(conn, username=username, password=password, role=role)
        _audit(conn, "user.create", user.username, {"role": role})
    click.echo(f"created {user.username} ({user.role})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def user_list(as_json: bool) -> None:
    """Users with role, state and last login."""
    with _runtime() as rt, rt.database.writer() as conn:
        found = users.list_users(conn)
    if as_json:
        click.echo(json.dumps([u.public() for u in found], indent=2, default=str))
        return
    for u in found:
        last = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
        click.echo(f"{u.username:24} {u.role:9} {'disabled' if u.disabled else 'active':9} last login {last}")


def _state_command(name: str, disabled: bool) -> click.Command:
    @click.command(name)
    @click.argument("username")
    def command(username: str) -> None:
        with _runtime() as rt, rt.database.writer() as conn:
            user = users.set_disabled(conn, username=username, disabled=disabled, now=_now())
            _audit(conn, f"user.{name}", user.username)
        click.echo(f"{user.username} is {'disabled; their sessions and tokens end now' if disabled else 'enabled'}")
    command.help = f"{name.capitalize()} a user."
    return command


user_group.add_command(_state_command("disable", True))
user_group.add_command(_state_command("enable", False))


@user_group.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(users.ROLES))
def user_set_role(username: str, role: str) -> None:
    """Change a user's role."""
    with _runtime() as rt, rt.database.writer() as conn:
        user = users.set_role(conn, username=username, role=role, now=_now())
        _audit(conn, "user.set_role", user.username, {"role": role})
    click.echo(f"{user.username} is now {user.role}")


@user_group.command("permit")
@click.argument("username")
@click.argument("permission", type=click.Choice([deletion.PERMISSION]))
@click.option("--revoke", is_flag=True, help="Take the permission away instead.")
def user_permit(username: str, permission: str, revoke: bool) -> None:
    """Grant (or --revoke) an extra permission such as executions.force-delete."""
    with _runtime() as rt, rt.database.writer() as conn:
        users.find_user(conn, username)
        conn.execute(sa.text(
            "UPDATE users SET permissions = CASE WHEN :revoke THEN array_remove(permissions, :p) "
            "WHEN :p = ANY(permissions) THEN permissions ELSE array_append(permissions, :p) END, "
            "updated_at = now() WHERE username = :u"), {"revoke": revoke, "p": permission, "u": username})
        _audit(conn, "user.permission", username, {"permission": permission, "granted": not revoke})
    click.echo(f"{username}: {permission} {'revoked' if revoke else 'granted'}")


@click.command("seal")
def seal_command() -> None:
    """Seal every closed hour now (the scheduler does this hourly)."""
    now = _now()
    with _runtime() as rt, rt.database.writer() as conn:
        created = sealing.seal_closed_periods(conn, rt.payloads.store, now=now, lock_days=rt.settings.seal_lock_days)
        last = sealing.last_seal(conn)
    sealed = f"; sealed through {last.period_end.astimezone(UTC):%Y-%m-%d %H:00} UTC" if last else ""
    if created:
        click.echo(f"sealed {len(created)} period(s){sealed}")
        return
    # Nothing new: say when the next hour can be sealed, so nobody reads 0 as "sealing is broken".
    open_hour = sealing.period_of(now - sealing.GRACE)
    ready = open_hour + sealing.PERIOD + sealing.GRACE
    click.echo(f"nothing to seal yet{sealed}. The hour from {open_hour:%H:00} UTC "
               f"can be sealed from {ready:%Y-%m-%d %H:%M} UTC ({sealing.GRACE.seconds // 60} minutes after it "
               "ends, for transactions still committing).")


@click.command("verify")
@click.option("--since", default=None, help="Only seals ending after this date (YYYY-MM-DD or ISO timestamp).")
@click.option("--json", "as_json", is_flag=True)
def verify_command(since: str | None, as_json: bool) -> None:
    """Recompute every seal from the rows; exit 1 naming each row added, changed or removed after sealing."""
    since_at = _parse_since(since)
    with _runtime() as rt, rt.database.reader() as conn:
        report = seal_verify.verify(conn, since=since_at, store=rt.payloads.store, payloads=rt.payloads)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "seals_checked": report.seals_checked,
                               "rows_checked": report.rows_checked, "mismatches": report.mismatches,
                               "problems": report.problems, "authorised_removals": report.authorised},
                              indent=2, default=str))
    else:
        for m in report.mismatches:
            extra = f" ({m['detail']})" if m.get("detail") else ""
            click.echo(f"{m['change'].upper():8} {m['table']:24} {m['key']}  sealed period "
                       f"{m['period_start']:%Y-%m-%d %H:00}{extra}")
        for p in report.problems:
            click.echo(f"SEAL     #{p['seal_id']} {p['period_start']:%Y-%m-%d %H:00}: {p['problem']}")
        for a in report.authorised:
            click.echo(f"AUTHORISED {a['kind']} {a['table']:20} {a['key']}  by {a['actor']}: {a['reason']}")
        verdict = "OK" if report.ok else f"MISMATCH: {len(report.mismatches)} row(s), {len(report.problems)} seal(s)"
        click.echo(f"{verdict}; {report.seals_checked} seal(s), {report.rows_checked} row(s) checked")
    if not report.ok:
        sys.exit(1)


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD or an ISO 8601 timestamp", param_hint="--since") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def security_commands() -> list[click.Command]:
    """The commands this module adds to the flowledger group."""
    commands: list[Callable] = [token_group, user_group, seal_command, verify_command]
    return commands
