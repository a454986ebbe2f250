"""The ``tollway`` command line. It parses arguments and calls library functions; no logic here.

Every failure the user can fix is printed as one ``error: ...`` line with exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from tollway.config.apply import apply_config
from tollway.config.export import dump_yaml, export_config
from tollway.config.loader import ConfigError, load_config_file
from tollway.crypto import SecretBox
from tollway.db.migrate import upgrade
from tollway.db.models import (
    AdminToken,
    Subscription,
    SubscriptionState,
    User,
    UserRole,
    utcnow,
)
from tollway.db.session import make_engine, session_factory, transaction
from tollway.errors import UserError
from tollway.services import admin_tokens, audit, users
from tollway.services import subscriptions as subs
from tollway.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    help="Tollway: self-hosted API management for Python APIs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
user_app = typer.Typer(help="Manage developer and admin accounts.", no_args_is_help=True)
subscription_app = typer.Typer(help="Manage subscriptions.", no_args_is_help=True)
key_app = typer.Typer(help="Manage subscription keys.", no_args_is_help=True)
token_app = typer.Typer(help="Manage admin API tokens.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(subscription_app, name="subscription")
app.add_typer(key_app, name="key")

HostOption = Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on [default: 8000]")]


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        fail(f"invalid settings: {exc}")


@contextmanager
def store(settings: Settings, *, migrate: bool = True) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    try:
        if migrate:
            upgrade(engine)
        yield engine
    finally:
        engine.dispose()


def run_in_transaction(settings: Settings, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction; the audit log names ``cli`` for what it changes."""
    with store(settings) as engine, transaction(session_factory(engine)) as session:
        return work(audit.acting(session, audit.CLI))


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secret_key.get_secret_value() if settings.secret_key else None)


# serving ----------------------------------------------------------------------------------------
@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Run the gateway (applies pending migrations first)."""
    from tollway.server import configure_logging
    from tollway.server import serve as run
    from tollway.stores import check_store_url

    settings = load_settings(host=host, port=port)
    check_store_url(settings.redis_url)
    with store(settings):
        pass
    configure_logging()
    run(settings, workers=workers)


@app.command()
def demo(host: HostOption = None, port: PortOption = None) -> None:
    """Run the demo: gateway + docs + sample APIs on ./tollway-demo.db, with a demo key."""
    from tollway.demo.setup import DATABASE_FILE, demo_banner, demo_secret_key, prepare_demo
    from tollway.server import check_port_free, configure_logging
    from tollway.server import serve as run

    here = Path.cwd()
    settings = Settings(
        database_url=f"sqlite:///{here / DATABASE_FILE}",
        secret_key=demo_secret_key(here),
        host=host or "127.0.0.1",
        port=port or 8000,
    )
    check_port_free(settings.host, settings.port)
    engine = make_engine(settings.database_url)
    try:
        demo_key = prepare_demo(engine, secret_box(settings))
    finally:
        engine.dispose()
    base = f"http://{settings.host}:{settings.port}"
    typer.echo(f"Starting the Tollway demo on {base} (database: {here / DATABASE_FILE}) ...")
    configure_logging()
    run(settings, on_ready=lambda: typer.echo(demo_banner(base, demo_key)))


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    with store(load_settings()):
        typer.echo("database is up to date")


# declarative config -----------------------------------------------------------------------------
@app.command(name="apply")
def apply_command(
    file: Annotated[Path, typer.Option("-f", "--file", help="tollway.yaml to apply.")],
    prune: Annotated[bool, typer.Option(help="Delete what the file no longer names.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Show the changes without making them.")] = False,
) -> None:
    """Make the gateway's configuration match a YAML file (idempotent, all or nothing)."""
    settings = load_settings()
    config = load_config_file(file)
    with store(settings) as engine:
        plan = apply_config(
            session_factory(engine),
            config,
            prune=prune,
            dry_run=dry_run,
            secret_box=secret_box(settings),
            actor=audit.CLI,
        )
    for line in plan.lines():
        typer.echo(line)
    if dry_run and not plan.empty:
        typer.echo("(dry run: nothing was changed)")


@app.command(name="export")
def export_command(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the current configuration as YAML (secret named values masked)."""
    text = run_in_transaction(load_settings(), lambda s: dump_yaml(export_config(s)))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}")


# users ------------------------------------------------------------------------------------------
@user_app.command("create")
def user_create(
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    admin: Annotated[bool, typer.Option(help="Give the user the admin role.")] = False,
) -> None:
    """Create a developer (or, with --admin, an administrator)."""
    role = UserRole.admin if admin else UserRole.developer

    def work(session: Session) -> str:
        return users.create_user(session, email, name=name, role=role).email

    typer.echo(f"created {role} {run_in_transaction(load_settings(), work)}")


@user_app.command("set-password")
def user_set_password(email: str) -> None:
    """Set a user's portal password: typed at a hidden prompt, or read from standard input.

    Never from a command-line argument, where it would land in shell history and `ps`.
    """
    if sys.stdin.isatty():
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")

    def work(session: Session) -> str:
        user = users.get_user(session, email)
        users.set_password(session, user, password)
        return user.email

    typer.echo(f"password set for {run_in_transaction(load_settings(), work)}")


@user_app.command("list")
def user_list() -> None:
    """List users."""

    def work(session: Session) -> list[str]:
        rows = session.scalars(select(User).order_by(User.id))
        return [f"{u.id}\t{u.email}\t{u.role}\t{u.state}" for u in rows]

    for line in run_in_transaction(load_settings(), work):
        typer.echo(line)


# subscriptions ----------------------------------------------------------------------------------
@subscription_app.command("create")
def subscription_create(
    user: Annotated[str, typer.Option(help="E-mail of the subscribing user.")],
    product: Annotated[str, typer.Option(help="Product name.")],
    name: Annotated[str, typer.Option(help="Subscription name.")] = "",
) -> None:
    """Subscribe a user to a product and print both keys (shown only this once)."""

    def work(session: Session) -> subs.IssuedKeys:
        owner = users.get_user(session, user)
        return subs.create_subscription(
            session,
            owner,
            subs.get_product(session, product),
            name=name,
            state=SubscriptionState.active,
        )

    issued = run_in_transaction(load_settings(), work)
    typer.echo(f"subscription {issued.subscription.id} ({issued.subscription.state})")
    typer.echo(f"primary key: {issued.primary}")
    typer.echo(f"secondary key: {issued.secondary}")
    typer.echo("store these keys now: Tollway keeps only their digests")


@subscription_app.command("list")
def subscription_list() -> None:
    """List subscriptions with their state and key prefixes."""

    def work(session: Session) -> list[str]:
        rows = session.scalars(select(Subscription).order_by(Subscription.id))
        return [
            f"{s.id}\t{s.user.email}\t{s.product.name}\t{s.state}\t"
            f"{s.primary_prefix}…\t{s.secondary_prefix}…"
            for s in rows
        ]

    for line in run_in_transaction(load_settings(), work):
        typer.echo(line)


def _set_state(subscription_id: int, state: SubscriptionState) -> None:
    def work(session: Session) -> None:
        subs.set_subscription_state(session, subs.get_subscription(session, subscription_id), state)

    run_in_transaction(load_settings(), work)
    typer.echo(f"subscription {subscription_id} is {state}")


@subscription_app.command("suspend")
def subscription_suspend(subscription_id: int) -> None:
    """Suspend a subscription: its keys stop working in every gateway within seconds."""
    _set_state(subscription_id, SubscriptionState.suspended)


@subscription_app.command("activate")
def subscription_activate(subscription_id: int) -> None:
    """Activate a submitted or suspended subscription."""
    _set_state(subscription_id, SubscriptionState.active)


# keys -------------------------------------------------------------------------------------------
@key_app.command("regenerate")
def key_regenerate(
    subscription_id: int,
    secondary: Annotated[
        bool, typer.Option("--secondary", help="Regenerate the secondary key instead.")
    ] = False,
) -> None:
    """Replace one key of a subscription; the other keeps working. Prints the new key once."""
    slot: subs.KeySlot = "secondary" if secondary else "primary"

    def work(session: Session) -> str:
        return subs.regenerate_key(session, subs.get_subscription(session, subscription_id), slot)

    key = run_in_transaction(load_settings(), work)
    typer.echo(f"new {slot} key: {key}")


# admin API tokens -------------------------------------------------------------------------------
@token_app.command("create")
def token_create(
    name: str,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="The token may only read, never change.")
    ] = False,
    expires: Annotated[
        int | None, typer.Option("--expires", help="Days until the token stops working.")
    ] = None,
) -> None:
    """Make an admin API token and print it (shown only this once)."""

    def work(session: Session) -> str:
        return admin_tokens.create_token(
            session, name, read_only=read_only, expires_days=expires
        ).token

    token = run_in_transaction(load_settings(), work)
    typer.echo(f"token {name} ({'read-only' if read_only else 'read-write'}): {token}")
    typer.echo("store it now: Tollway keeps only its digest")


@token_app.command("list")
def token_list() -> None:
    """List admin API tokens: name, prefix, access, state, expiry, last use."""

    def describe(token: AdminToken, now: datetime) -> str:
        access = "read-only" if token.read_only else "read-write"
        fields = [token.name, f"{token.prefix}…", access, admin_tokens.token_state(token, now)]
        if token.expires_at is not None:
            fields.append(f"expires {token.expires_at:%Y-%m-%d %H:%M}")
        if token.last_used_at is not None:
            fields.append(f"last used {token.last_used_at:%Y-%m-%d %H:%M}")
        return "\t".join(fields)

    def work(session: Session) -> list[str]:
        now = utcnow()
        return [describe(token, now) for token in admin_tokens.list_tokens(session)]

    for line in run_in_transaction(load_settings(), work):
        typer.echo(line)


@token_app.command("revoke")
def token_revoke(name: str) -> None:
    """Revoke an admin API token: it stops working at once."""
    run_in_transaction(load_settings(), lambda s: admin_tokens.revoke_token(s, name))
    typer.echo(f"token {name} revoked")


# audit log --------------------------------------------------------------------------------------
@app.command(name="audit")
def audit_command(
    since: Annotated[
        str | None,
        typer.Option(help="Only changes since: an ISO date/time (UTC) or 30m, 12h, 7d ago."),
    ] = None,
    entity: Annotated[str | None, typer.Option(help="Only this kind of entity.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (cli, token:NAME...).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many rows.")] = 100,
) -> None:
    """Print the audit log, newest first: when, who, from where, what, and the change."""
    start = audit.parse_since(since, utcnow()) if since else None

    def work(session: Session) -> list[str]:
        rows = audit.audit_entries(session, entity=entity, actor=actor, since=start, limit=limit)
        return [
            f"{r.at:%Y-%m-%d %H:%M:%S}\t{r.actor}\t{r.address}\t{r.entity}\t{r.entity_id}\t"
            f"{r.action}\t{json.dumps(r.changes, sort_keys=True)}"
            for r in rows
        ]

    for line in run_in_transaction(load_settings(), work):
        typer.echo(line)


def main() -> None:
    """Entry point: run the CLI, turning expected failures into one clear line."""
    try:
        app()
    except ConfigError as exc:
        typer.secho("error: the configuration is invalid:", fg=typer.colors.RED, err=True)
        for message in exc.messages:
            typer.echo(f"  {message}", err=True)
        sys.exit(1)
    except UserError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        typer.secho(f"error: cannot reach the database: {reason}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        typer.secho(f"error: database error: {type(exc).__name__}", fg=typer.colors.RED, err=True)
        sys.exit(1)
