"""Location pings over real HTTP against a floor measured in the same run.

    FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099 python -m bench.pings      (or `make bench-pings`)

One granian process (one ASGI worker) on 127.0.0.1 serves the app plus `POST /bench/floor`, which takes the
same body and answers the same 202 without I/O (bench/floor_app.py). A second process, `wrk` (or
bench/loadgen.py where wrk is missing), sends one ping per request over keep-alive connections, each
request with the next of N on-duty technicians' emulator ID tokens. `POST /v1/me/locations` answers only
once the ping is committed, so the ratio app/floor is what durable storage costs. After each app run the
bench checks that every response was a 202 and that as many pings landed in `location_pings`.

The database is `truckroll_bench_pings` (bench/common.py) on DATABASE_URL's server, else in the embedded
cluster (started if needed and stopped again if it was stopped). The technicians belong to the
organisation "Truckroll Bench", created on first use and put on duty for the run; afterwards they go off
duty again and their pings are deleted.

The last line reads `pings: floor_rps=<n> app_rps=<n> ratio=<r>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path(__file__).resolve().parent / "pings.lua"
BENCH_DATABASE = "truckroll_bench_pings"
BENCH_ORG = "Truckroll Bench"
APP_PATH = "/v1/me/locations"
FLOOR_PATH = "/bench/floor"  # bench.floor_app.FLOOR_PATH
GOAL = 0.5


def say(message: str) -> None:
    print(f"bench.pings: {message}", flush=True)


# ---------------------------------------------------------------------- database


def embedded_cluster() -> tuple[object | None, bool]:
    """(the embedded cluster, whether it is running now); (None, True) with DATABASE_URL."""
    if os.environ.get("DATABASE_URL"):
        return None, True
    from infra.postgis import LocalCluster

    cluster = LocalCluster(REPO / ".truckroll" / "postgres")
    return cluster, cluster.status()


async def prepare_technicians(settings, count: int) -> dict[str, uuid.UUID]:
    """The bench organisation with `count` on-duty technicians, created as needed: {firebase uid: id}."""
    from sqlalchemy import select, update

    from backend.db.engine import make_engine, make_sessionmaker
    from backend.db.models import Organization, PoolMembership, Technician
    from backend.orgs import services as orgs
    from backend.schemas import LatLon
    from backend.technicians import services as technicians
    from backend.technicians.schemas import TechnicianCreate

    uids = [f"bench-tech-{i + 1:04d}" for i in range(count)]
    engine = make_engine(settings.database)
    try:
        async with make_sessionmaker(engine)() as session:
            org_id = await session.scalar(
                select(Organization.id).where(Organization.name == BENCH_ORG).order_by(Organization.created_at).limit(1)
            )
            if org_id is None:
                org, _, _ = await orgs.create_org(BENCH_ORG, {"bench": True}, session=session)
                org_id = org.id
            in_pool = set(
                await session.scalars(
                    select(Technician.firebase_uid)
                    .join(PoolMembership, PoolMembership.technician_id == Technician.id)
                    .where(PoolMembership.org_id == org_id)
                )
            )
            missing = [uid for uid in uids if uid not in in_pool]
            if missing:
                say(f"onboarding {len(missing)} technicians into {BENCH_ORG!r}")
            for n, uid in enumerate(missing):
                await technicians.onboard(
                    org_id,
                    TechnicianCreate(
                        name=f"Bench Technician {uid[-4:]}",
                        firebase_uid=uid,
                        skills=["hvac"],
                        home=LatLon(lat=52.52 + (n % 20 - 10) * 0.01, lon=13.405 + (n // 20 - 5) * 0.01),
                        service_radius_km=25.0,
                        tier="approved",
                    ),
                    session=session,
                )
            await session.execute(update(Technician).where(Technician.firebase_uid.in_(uids)).values(on_duty=True))
            rows = (
                await session.execute(
                    select(Technician.firebase_uid, Technician.id).where(Technician.firebase_uid.in_(uids))
                )
            ).all()
            await session.commit()
            return {row.firebase_uid: row.id for row in rows}
    finally:
        await engine.dispose()


class BenchRows:
    """Counts (and deletes) the bench technicians' rows in location_pings, over a plain sync connection."""

    def __init__(self, url: str, technician_ids: list[uuid.UUID]) -> None:
        from sqlalchemy import create_engine

        self._engine = create_engine(url)
        self._ids = technician_ids

    def count(self) -> int:
        from sqlalchemy import text

        with self._engine.connect() as conn:
            return conn.scalar(
                text("SELECT count(*) FROM location_pings WHERE technician_id = ANY(:ids)"), {"ids": self._ids}
            )

    def commits(self) -> int:
        """Transactions committed in this database so far (pg_stat_database lags by up to a second)."""
        from sqlalchemy import text

        with self._engine.connect() as conn:
            return conn.scalar(text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))

    def delete(self, *, off_duty: bool = False) -> None:
        """Forget the bench's pings; with `off_duty`, also take its technicians off duty again."""
        from sqlalchemy import text

        with self._engine.begin() as conn:
            conn.execute(text("DELETE FROM location_pings WHERE technician_id = ANY(:ids)"), {"ids": self._ids})
            if off_duty:
                conn.execute(text("UPDATE technicians SET on_duty = false WHERE id = ANY(:ids)"), {"ids": self._ids})

    def close(self) -> None:
        self._engine.dispose()


# ---------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_stat(pid: int) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) of a process; (0, 0.0) when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0.0
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One granian process with one ASGI worker serving bench.floor_app:app on 127.0.0.1."""

    def __init__(self, port: int, log_path: Path, env: dict[str, str], target: str = "bench.floor_app:app") -> None:
        self.port = port
        self.log_path = log_path
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", "1"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
        argv += [target]
        self._log = open(log_path, "wb")
        # A session of its own: should granian not stop, its whole group (it and its worker) is killed.
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time used so far by granian and its worker (Linux /proc; 0 where unavailable)."""
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if entry.name.isdigit() and _proc_stat(int(entry.name))[0] == self.proc.pid:
                    pids.append(int(entry.name))
        return sum(_proc_stat(pid)[1] for pid in pids)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


# ---------------------------------------------------------------------- load


class Load:
    """Runs the load generator as a separate process and parses its `BENCH key=value ...` line."""

    def __init__(self, tokens_file: Path, connections: int, wrk: str | None) -> None:
        self.tokens_file = tokens_file
        self.connections = connections
        self.wrk = wrk

    def run(self, url: str, seconds: int, server: Server | None = None) -> dict[str, float]:
        if self.wrk:
            argv = [self.wrk, "-t1", f"-c{self.connections}", f"-d{seconds}s", "--timeout", "5s"]
            argv += ["-s", str(LUA_SCRIPT), url, "--", str(self.tokens_file)]
        else:
            argv = [sys.executable, "-m", "bench.loadgen", url, str(self.tokens_file)]
            argv += ["--connections", str(self.connections), "--duration", str(seconds)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = server.cpu_seconds() if server else 0.0
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=seconds + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = server.cpu_seconds() - server_before if server else 0.0
        line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        stats: dict[str, float] = {k: int(v) for k, v in (kv.split("=", 1) for kv in line.split()[1:])}
        stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        stats["client_cpu"] = cpu / (stats["duration_us"] / 1e6)
        stats["server_cpu"] = server_cpu / (stats["duration_us"] / 1e6)
        stats["server_cpu_us"] = server_cpu / max(1, stats["requests"]) * 1e6
        stats["errors"] = stats["connect"] + stats["read"] + stats["write"] + stats["timeout"]
        return stats


def describe(stats: dict[str, float]) -> str:
    return (
        f"{stats['rps']:8.0f} req/s  p50 {stats['p50_us'] / 1000:5.1f} ms  p99 {stats['p99_us'] / 1000:6.1f} ms  "
        f"202s {stats['acked']:.0f}/{stats['requests']:.0f}  socket errors {stats['errors']:.0f}  "
        f"cpu: server {stats['server_cpu']:.0%} ({stats['server_cpu_us']:.0f} us/req), client {stats['client_cpu']:.0%}"
    )


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--technicians", type=int, default=200, help="distinct technicians (tokens), round-robin")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up on each endpoint")
    parser.add_argument("--rounds", type=int, default=2, help="floor/app alternations; the best of each counts")
    args = parser.parse_args(argv)

    if os.environ.get("TRUCKROLL_ENV") == "production":
        sys.exit("bench.pings: refuses to run with TRUCKROLL_ENV=production (it uses unsigned emulator tokens)")
    if not os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"):
        os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = "127.0.0.1:9099"
        say("FIREBASE_AUTH_EMULATOR_HOST was not set: using 127.0.0.1:9099 (emulator ID tokens)")

    from backend.auth import emulator_id_token
    from backend.settings import load_settings
    from bench.common import bench_database

    wrk = shutil.which("wrk")
    if wrk is None:
        say("wrk not found (`apt-get install wrk`): falling back to bench/loadgen.py, which competes for CPU")

    cluster, cluster_was_running = embedded_cluster()
    if not cluster_was_running:
        say("starting the embedded cluster")
    server: Server | None = None
    counter: BenchRows | None = None
    workdir = Path(tempfile.mkdtemp(prefix="truckroll-bench-"))
    try:
        # A database of its own next to the development one (as the other benchmarks do), migrated.
        url = bench_database(BENCH_DATABASE)
        say(f"database {BENCH_DATABASE} ({'DATABASE_URL' if cluster is None else 'embedded cluster'})")
        settings = load_settings({**os.environ, "DATABASE_URL": url})
        ids = asyncio.run(prepare_technicians(settings, args.technicians))
        counter = BenchRows(url, list(ids.values()))
        counter.delete()
        tokens_file = workdir / "tokens"
        project_id = settings.auth.firebase_project_id
        tokens_file.write_text("".join(emulator_id_token(uid, project_id) + "\n" for uid in sorted(ids)))

        server = Server(
            free_port(), workdir / "server.log", env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}
        )
        server.wait_ready()
        load = Load(tokens_file, args.connections, wrk)
        cores = os.cpu_count()
        say(
            f"server pid {server.proc.pid} on 127.0.0.1:{server.port} (granian, 1 ASGI worker); "
            f"{len(ids)} technicians, {args.connections} connections, {cores} cores, "
            f"load average {os.getloadavg()[0]:.2f}, client {'wrk' if wrk else 'bench.loadgen'}"
        )

        say(f"warm-up: {args.warmup} s on each endpoint")
        load.run(server.url(FLOOR_PATH), args.warmup)
        warm = load.run(server.url(APP_PATH), args.warmup)
        if warm["acked"] != warm["requests"] or warm["requests"] == 0:
            raise RuntimeError(
                f"the app did not answer 202 during the warm-up ({describe(warm)}):\n{server.log_tail()}"
            )

        floors: list[float] = []
        apps: list[float] = []
        problems: list[str] = []
        for r in range(1, args.rounds + 1):
            stats = load.run(server.url(FLOOR_PATH), args.duration, server)
            floors.append(stats["rps"])
            say(f"round {r} floor {describe(stats)}")
            if stats["acked"] != stats["requests"] or stats["errors"]:
                problems.append(
                    f"round {r} floor: {stats['other']:.0f} non-202 responses, {stats['errors']:.0f} errors"
                )

            time.sleep(1.2)  # let stragglers finish and pg_stat_database catch up before counting
            stored_before, commits_before = counter.count(), counter.commits()
            stats = load.run(server.url(APP_PATH), args.duration, server)
            time.sleep(1.2)  # requests still in flight when the client stopped may commit after it
            stored, commits = counter.count() - stored_before, counter.commits() - commits_before
            apps.append(stats["rps"])
            say(f"round {r} app   {describe(stats)}")
            say(
                f"round {r} app   stored {stored} pings in ~{commits} commits (~{stored / max(1, commits):.1f} a commit)"
            )
            acked = int(stats["acked"])
            if acked != stats["requests"] or stats["errors"]:
                problems.append(f"round {r} app: {stats['other']:.0f} non-202 responses, {stats['errors']:.0f} errors")
            # Every acknowledged ping is stored; at most one request per connection was cut off unanswered.
            if not acked <= stored <= acked + args.connections:
                problems.append(f"round {r} app: {acked} pings acknowledged but {stored} stored")
    finally:
        if server is not None:
            server.stop()
        if counter is not None:
            with contextlib.suppress(Exception):
                counter.delete(off_duty=True)
            counter.close()
        if cluster is not None and not cluster_was_running:
            say("stopping the embedded cluster again")
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    floor_rps, app_rps = max(floors), max(apps)
    ratio = app_rps / floor_rps if floor_rps else 0.0
    for problem in problems:
        say(f"FAILED CHECK: {problem}")
    say(f"goal: app >= {GOAL} x floor: {'met' if ratio >= GOAL else 'NOT met'}")
    print(f"pings: floor_rps={floor_rps:.0f} app_rps={app_rps:.0f} ratio={ratio:.2f}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
