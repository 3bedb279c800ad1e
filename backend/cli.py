"""The `truckroll` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from backend.settings import DEV_ADMIN_TOKEN, REPO_ROOT, Settings, SettingsError, load_settings

PID_FILE = REPO_ROOT / ".truckroll" / "serve.pid"


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.exit(f"truckroll: invalid setting: {exc}")


def _database_url(settings: Settings, *, start: bool = True) -> str:
    """The database to use; without DATABASE_URL the embedded cluster, started on demand."""
    if settings.database.url:
        return settings.database.url
    from infra.postgis import LocalCluster

    cluster = LocalCluster(Path(settings.database.embedded_root))
    if start:
        cluster.ensure()
    return cluster.url()


def cmd_serve(args: argparse.Namespace) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    settings = _settings()
    _database_url(settings)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    print(f"truckroll: serving on http://{host}:{port} (OpenAPI docs at http://{host}:{port}/schema)", flush=True)
    if settings.auth.admin_token == DEV_ADMIN_TOKEN:
        print(f"truckroll: development operator token: {DEV_ADMIN_TOKEN} (set TRUCKROLL_ADMIN_TOKEN)", flush=True)
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    PID_FILE.write_text(str(os.getpid()))
    try:
        Granian(
            target="backend.app:app_from_env",
            factory=True,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=args.workers,
            log_access=False,
        ).serve()
    finally:
        PID_FILE.unlink(missing_ok=True)


def cmd_stop(args: argparse.Namespace) -> None:
    """Stop what `make run` started: the server, then the embedded cluster; and remove the throwaway
    clusters of test runs that were killed part-way (their owning process is gone)."""
    import signal
    import time

    if PID_FILE.exists():
        pid = int(PID_FILE.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        PID_FILE.unlink(missing_ok=True)
        print("truckroll: server stopped")
    from infra.postgis import LocalCluster, reap_orphans

    settings = _settings()
    if not settings.database.url:
        LocalCluster(Path(settings.database.embedded_root)).stop()
        print("truckroll: embedded database stopped")
    for root in reap_orphans():
        print(f"truckroll: removed the throwaway database of a test run that is gone ({root})")


def cmd_worker(args: argparse.Namespace) -> None:
    """Run the job queue (offer deadlines, push delivery) in its own process."""

    from backend.db.engine import make_engine, make_sessionmaker
    from backend.observability import configure_logging
    from backend.push import make_sender
    from backend.queue import WORKER_OPTIONS, Runtime, run_supervised_worker
    from backend.tasks import make_queue

    settings = _settings()
    url = _database_url(settings)
    configure_logging(settings.server.log_format)  # as the server logs: json in production

    async def run() -> None:
        # SIGTERM (a service manager stopping it) ends it as gracefully as Ctrl-C: cancelling lets the
        # worker finish its jobs in hand.
        main = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        engine = make_engine(settings.database)
        sender = make_sender(settings.push, settings.auth.firebase_project_id)
        queue = make_queue(url)
        try:
            async with queue.open_async():
                runtime = Runtime(
                    sessionmaker=make_sessionmaker(engine),
                    sender=sender,
                    tracking=settings.tracking,
                    matching=settings.matching,
                )
                # Restarted after a database outage, like the worker inside the server process.
                await run_supervised_worker(queue, additional_context={"runtime": runtime}, **WORKER_OPTIONS)
        finally:
            await sender.aclose()
            await engine.dispose()

    print("truckroll: queue worker running (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(run())


def cmd_db(args: argparse.Namespace) -> None:
    settings = _settings()
    if args.action in ("start", "stop", "status") and settings.database.url:
        sys.exit(f"truckroll: DATABASE_URL is set; there is no embedded cluster to {args.action}")
    if args.action == "start":
        print(_database_url(settings))
    elif args.action in ("stop", "status"):
        from infra.postgis import LocalCluster

        cluster = LocalCluster(Path(settings.database.embedded_root))
        if args.action == "stop":
            cluster.stop()
        else:
            print("running" if cluster.status() else "stopped")
    elif args.action == "url":
        print(_database_url(settings, start=False))
    elif args.action == "upgrade":
        from backend.db.migrate import upgrade

        upgrade(_database_url(settings))
    elif args.action == "revision":
        from backend.db.migrate import revision

        if not args.message:
            sys.exit("truckroll db revision: -m MESSAGE is required")
        revision(_database_url(settings), args.message)


def cmd_orgs(args: argparse.Namespace) -> None:
    from backend.db.engine import make_engine, make_sessionmaker
    from backend.orgs import services

    settings = _settings()
    _database_url(settings)

    async def run() -> None:
        engine = make_engine(settings.database)
        try:
            async with make_sessionmaker(engine)() as session:
                if args.action == "create":
                    org, _, key = await services.create_org(args.name, session=session)
                    print(f"org_id={org.id}\napi_key={key}")
                else:
                    import uuid

                    from backend.errors import NotFound

                    try:
                        await services.revoke_api_key(uuid.UUID(args.org_id), uuid.UUID(args.key_id), session=session)
                    except NotFound as exc:
                        sys.exit(f"truckroll: {exc.detail}")
                    print("revoked")
        finally:
            await engine.dispose()

    asyncio.run(run())


def cmd_seed(args: argparse.Namespace) -> None:
    from backend.seed import seed_demo

    settings = _settings()
    _database_url(settings)
    key_file = Path(args.key_file)
    known = key_file.read_text().strip() if key_file.exists() else None
    key = asyncio.run(seed_demo(settings, known_key=known))
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    print(f"truckroll: demo organisation ready; its API key is in {key_file}:\n{key}")


def cmd_dev_token(args: argparse.Namespace) -> None:
    from backend.auth import emulator_id_token

    settings = _settings()
    if settings.is_production:
        sys.exit("truckroll: dev-token is for development only")
    print(emulator_id_token(args.uid, settings.auth.firebase_project_id, lifetime_s=args.hours * 3600))


def cmd_simulate(args: argparse.Namespace) -> None:
    """Drive the running API with simulated technicians and a dispatcher (see simulator/)."""
    import signal

    import httpx

    from backend.auth import emulator_id_token
    from simulator import Options, SimulationError, run_simulation

    settings = _settings()
    if settings.is_production:
        sys.exit("truckroll: simulate uses emulator ID tokens and is for development only")
    api_key = args.api_key
    if not api_key:
        key_file = Path(args.key_file)
        if not key_file.exists():
            sys.exit(f"truckroll: no --api-key and no {key_file} (run `truckroll seed` first)")
        api_key = key_file.read_text().strip()
    try:
        lat, lon = (float(x) for x in args.city.split(","))
    except ValueError:
        sys.exit("truckroll: --city must be LAT,LON")
    project_id = args.project_id or settings.auth.firebase_project_id
    options = Options(
        api_key=api_key,
        id_token=lambda uid: emulator_id_token(uid, project_id, lifetime_s=3600),
        technicians=args.technicians,
        jobs_per_minute=args.jobs_per_minute,
        duration_s=args.duration,
        seed=args.seed,
        city=(lat, lon),
        speed_up=args.speed_up,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with httpx.AsyncClient(base_url=args.base_url, timeout=30) as client:
            try:
                summary = await run_simulation(client, options, stop)
            except SimulationError as exc:
                sys.exit(f"truckroll: simulate: {exc}")
        print(f"truckroll: simulation over: {summary.line(options.duration_s or 0).split('] ', 1)[1]}")

    print(
        f"truckroll: simulating {args.technicians} technicians and {args.jobs_per_minute} jobs/min against "
        f"{args.base_url} (Ctrl-C to stop)",
        flush=True,
    )
    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="truckroll", description="Truckroll field-dispatch backend")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run the job queue's worker (offer deadlines, push delivery)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("stop", help="stop the server and the embedded database that `make run` started")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("db", help="the database: embedded cluster and migrations")
    p.add_argument("action", choices=["start", "stop", "status", "url", "upgrade", "revision"])
    p.add_argument("-m", "--message")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("orgs", help="organisations")
    org_sub = p.add_subparsers(dest="action", required=True)
    c = org_sub.add_parser("create", help="create an organisation and print its first API key")
    c.add_argument("name")
    r = org_sub.add_parser("revoke-key", help="revoke an organisation API key")
    r.add_argument("org_id")
    r.add_argument("key_id")
    p.set_defaults(func=cmd_orgs)

    p = sub.add_parser("seed", help="create or refresh the demo organisation and its technicians")
    p.add_argument("--key-file", default=str(REPO_ROOT / ".truckroll" / "demo-api-key"))
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("dev-token", help="print a Firebase-emulator ID token for a technician uid")
    p.add_argument("uid")
    p.add_argument("--hours", type=int, default=24)
    p.set_defaults(func=cmd_dev_token)

    p = sub.add_parser("simulate", help="demo: simulated technicians and a dispatcher driving the running API")
    p.add_argument("--base-url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", help="the organisation's API key (default: the demo key from `truckroll seed`)")
    p.add_argument("--key-file", default=str(REPO_ROOT / ".truckroll" / "demo-api-key"))
    p.add_argument("--project-id", help="Firebase project of the emulator tokens (default: the server's setting)")
    p.add_argument("--technicians", type=int, default=30)
    p.add_argument("--jobs-per-minute", type=float, default=6.0)
    p.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--city", default="52.52,13.405", help="LAT,LON of the city centre (default Berlin)")
    p.add_argument("--speed-up", type=float, default=1.0, help="time compression of travel")
    p.set_defaults(func=cmd_simulate)

    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args.func(args)


if __name__ == "__main__":
    main()
