"""A private PostgreSQL + PostGIS cluster for development and tests.

Standard library only: this module runs under the bare system ``python3`` before any virtualenv exists
(``python3 -m infra.postgis start``) and is importable from the application as ``infra.postgis``.

Layout for a cluster rooted at ``root`` (for example ``<checkout>/.truckroll/postgres``)::

    <home>/data/                 the data directory (owned by the server's OS user, mode 0700)
    <home>/data/server.log       the server log (``pg_ctl -l``)
    <home>/data/truckroll.conf   our settings, rewritten at every start, included from postgresql.conf
    /tmp/truckroll-<hash10>/     the Unix socket directory (mode 0700, owned by the server's OS user)

``home`` is ``root`` itself, except when we run as root and the ``postgres`` OS user cannot traverse
``root`` (a checkout under a mode-700 home directory): the files then live in
``/var/lib/truckroll/<hash12>/`` and ``root/location`` records that directory. ``hash`` is the SHA-1 of
the resolved ``root``, so clusters with different roots never share files or sockets.

The server never listens on TCP; local connections are trusted (only the server's OS user, and root,
can enter the socket directory). The superuser is ``postgres``.

A throwaway cluster (a test run's) is recorded in ``throwaway_registry()`` with its owning process (PID
and start time). A run killed part-way (SIGKILL, a CI timeout) never destroys its cluster; ``reap_orphans()``,
which the next test run and ``truckroll stop`` call, stops and deletes every throwaway cluster whose owner
is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "DEFAULT_DATABASE",
    "ClusterError",
    "LocalCluster",
    "PgInstall",
    "default_root",
    "find_postgres",
    "installed_majors",
    "main",
    "reap_orphans",
    "throwaway_registry",
]

DEFAULT_DATABASE = "truckroll"
SUPERUSER = "postgres"  # database superuser (initdb -U)
SERVER_OS_USER = "postgres"  # OS account that runs the server when we are root
PORT = 5432  # only names the socket file (.s.PGSQL.5432); there is no TCP listener
PG_LIB = Path("/usr/lib/postgresql")
PG_SHARE = Path("/usr/share/postgresql")
FALLBACK_BASE = Path("/var/lib/truckroll")
SOCKET_BASE = "/tmp"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
_INCLUDE_LINE = "include = 'truckroll.conf'"
_C_UTF8_LOCALE_DIRS = ("/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8")


class ClusterError(RuntimeError):
    """The local cluster could not be set up, started, stopped or queried."""


class PgInstall:
    """One installed PostgreSQL major version in the Debian layout (``/usr/lib/postgresql/<major>``)."""

    def __init__(self, major: str) -> None:
        self.major = major
        self.bindir = PG_LIB / major / "bin"
        self.postgis_control = PG_SHARE / major / "extension" / "postgis.control"

    def bin(self, name: str) -> str:
        return str(self.bindir / name)

    def __repr__(self) -> str:
        return f"PgInstall({self.major!r})"


def _major_key(major: str) -> tuple[int, ...]:
    return tuple(int(part) for part in major.split("."))


def installed_majors() -> list[str]:
    """Majors with a server installed (``/usr/lib/postgresql/<major>/bin/initdb``), oldest first."""
    try:
        entries = list(PG_LIB.iterdir())
    except OSError:
        return []
    majors = []
    for entry in entries:
        try:
            _major_key(entry.name)
        except ValueError:
            continue
        if os.access(entry / "bin" / "initdb", os.X_OK) and os.access(entry / "bin" / "postgres", os.X_OK):
            majors.append(entry.name)
    return sorted(majors, key=_major_key)


def find_postgres(major: str | None = None, *, require_postgis: bool = True) -> PgInstall:
    """The PostgreSQL installation to use.

    Without ``major``: the newest installed major that has PostGIS, else the newest one (which then fails
    the PostGIS check). PATH is deliberately ignored.
    """
    majors = installed_majors()
    if major is not None:
        if major not in majors:
            raise ClusterError(
                f"this cluster's data directory was created by PostgreSQL {major}, which is not installed "
                f"(no {PG_LIB / major / 'bin' / 'initdb'}): run `apt-get install postgresql-{major} "
                f"postgresql-{major}-postgis-3`, or delete the cluster directory to start afresh"
            )
        pg = PgInstall(major)
    elif not majors:
        raise ClusterError(
            f"no PostgreSQL server found (no {PG_LIB}/<major>/bin/initdb): run "
            "`apt-get install postgresql-15 postgresql-15-postgis-3` (Debian 12), "
            "or set DATABASE_URL to use an existing server"
        )
    else:
        with_postgis = [m for m in majors if PgInstall(m).postgis_control.is_file()]
        pg = PgInstall(with_postgis[-1] if with_postgis else majors[-1])
    if require_postgis and not pg.postgis_control.is_file():
        raise ClusterError(
            f"PostGIS is not installed for PostgreSQL {pg.major} ({pg.postgis_control} is missing): "
            f"run `apt-get install postgresql-{pg.major}-postgis-3`"
        )
    return pg


def default_root() -> Path:
    """``<repo>/.truckroll/postgres``, where repo is the parent of the ``infra/`` directory."""
    return Path(__file__).resolve().parent.parent / ".truckroll" / "postgres"


def _ident(name: str) -> str:
    """Quote an SQL identifier."""
    if not name or "\0" in name:
        raise ValueError(f"invalid identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _is_root() -> bool:
    return os.geteuid() == 0


def _clean_env() -> dict[str, str]:
    """The environment minus libpq/server variables (PGPORT, PGHOST, PGDATA, PGOPTIONS...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _cmdline(pid: int) -> list[str] | None:
    """A process's argv, or None when it does not exist (or is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return []  # /proc unreadable: callers fall back to a signal-0 probe
    if not raw:
        return None  # zombie or kernel thread
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    """The PIDs of a process's children (none found without /proc)."""
    children = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if len(fields) > 1 and fields[1] == str(pid):
                children.append(int(entry))
    return children


def _read_pid(path: Path) -> int | None:
    """The PID on the first line of a postmaster.pid / socket lock file (None if absent or garbled)."""
    try:
        first = path.read_text(errors="replace").split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    try:
        pid = int(first)
    except ValueError:
        return None
    return pid if pid > 0 else None


def _postmaster_data_dir(pid: int) -> str | None:
    """The ``-D`` argument of a running postmaster (None if ``pid`` is not a live postgres server)."""
    argv = _cmdline(pid)
    if argv is None:
        return None
    if argv == []:
        return "" if _pid_alive(pid) else None
    if not argv or not os.path.basename(argv[0]).startswith(("postgres", "postmaster")):
        return None
    for i, arg in enumerate(argv):
        if arg == "-D" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("-D") and len(arg) > 2:
            return arg[2:]
    return None


def _process_start(pid: int) -> int | None:
    """When a live process started (clock ticks after boot, field 22 of /proc/<pid>/stat); None if there is
    no such process, or only its zombie. A PID is reused once its process is gone; PID and start time are not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, ValueError):
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _owner_alive(pid: int, start: int | None) -> bool:
    if not os.path.exists("/proc/self/stat"):  # no procfs: the PID is all there is to go by
        return _pid_alive(pid)
    return start is not None and _process_start(pid) == start


def throwaway_registry() -> Path:
    """The directory recording throwaway clusters, one ``<hash12>.json`` per cluster: its root and owner."""
    if _is_root():
        return FALLBACK_BASE / "throwaway"
    return Path.home() / ".cache" / "truckroll" / "throwaway"


def reap_orphans() -> list[Path]:
    """Stop and delete every throwaway cluster whose owning process is gone; returns their roots.

    Clusters that were never recorded (the persistent ``make run`` cluster) and those whose owner still
    runs are left alone. A cluster that cannot be removed is reported with a warning and tried again next time.
    """
    try:
        records = sorted(throwaway_registry().glob("*.json"))
    except OSError:
        return []
    reaped = []
    for record in records:
        try:
            fd = os.open(record, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # reaped or destroyed meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another reaper is at it
            if os.fstat(fd).st_ino != getattr(_stat_or_none(record), "st_ino", None):
                continue  # replaced or removed since we opened it
            try:
                owner = json.loads(os.read(fd, 65536))
                root, pid, start = Path(owner["root"]), int(owner["pid"]), owner["start"]
            except (ValueError, KeyError, TypeError):
                warnings.warn(f"{record}: not a throwaway cluster record; remove it", stacklevel=2)
                continue
            if _owner_alive(pid, start):
                continue
            try:
                LocalCluster(root).destroy()
            except (ClusterError, OSError) as exc:
                warnings.warn(f"could not remove the orphaned throwaway cluster {root}: {exc}", stacklevel=2)
                continue
            with contextlib.suppress(FileNotFoundError):
                record.unlink()
            reaped.append(root)
        finally:
            os.close(fd)
    return reaped


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """A private PostgreSQL + PostGIS cluster whose files belong to ``root``.

    ``fast=True`` trades durability for speed (``fsync``, ``synchronous_commit`` and
    ``full_page_writes`` off): for throwaway test clusters. Settings apply when the server starts;
    ``ensure()`` does not restart a running server.

    ``throwaway=True``: ``ensure()`` records the calling process as the cluster's owner, and once that
    process is gone ``reap_orphans()`` destroys the cluster. ``destroy()`` forgets the record.
    """

    def __init__(self, root: str | os.PathLike[str], *, fast: bool = False, throwaway: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        self.fast = fast
        self.throwaway = throwaway
        self._hash = hashlib.sha1(str(self.root).encode()).hexdigest()
        self.socket_dir = Path(f"{SOCKET_BASE}/truckroll-{self._hash[:10]}")
        self.port = PORT

    def __repr__(self) -> str:
        return f"LocalCluster({str(self.root)!r}, fast={self.fast})"

    # ------------------------------------------------------------------ locations

    @property
    def location_file(self) -> Path:
        return self.root / "location"

    @property
    def owner_record(self) -> Path:
        """Where a throwaway cluster's owner is recorded (see ``reap_orphans()``)."""
        return throwaway_registry() / f"{self._hash[:12]}.json"

    @property
    def fallback_home(self) -> Path:
        return FALLBACK_BASE / self._hash[:12]

    @property
    def home(self) -> Path:
        """The directory that holds ``data/`` (``root``, or a directory named in ``root/location``)."""
        return self._locate(create=False)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _locate(self, *, create: bool) -> Path:
        """Where the cluster's files are; with ``create``, decide for good (recording a fallback)."""
        try:
            recorded = self.location_file.read_text().strip()
        except FileNotFoundError:
            recorded = ""
        if recorded:
            return Path(recorded)
        if not _is_root() or (self.root / "data").exists():
            return self.root
        if not (self.fallback_home / "data").exists():
            if not self.root.is_dir():
                return self.root  # nothing exists yet (and we are not creating anything)
            if self._server_can_traverse(self.root):
                return self.root
        if create:
            tmp = self.root / ".location.tmp"
            tmp.write_text(f"{self.fallback_home}\n")
            tmp.replace(self.location_file)
        return self.fallback_home

    def _record_owner(self) -> None:
        """Record this process as the owner, unless another live process already owns the cluster."""
        record = self.owner_record
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            owner = json.loads(record.read_text())
            if owner["pid"] != os.getpid() and _owner_alive(int(owner["pid"]), owner["start"]):
                return
        record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        owner = {"root": str(self.root), "pid": os.getpid(), "start": _process_start(os.getpid())}
        tmp.write_text(json.dumps(owner) + "\n")
        tmp.replace(record)

    def _server_can_traverse(self, directory: Path) -> bool:
        runuser = self._runuser()
        result = subprocess.run(
            [runuser, "-u", SERVER_OS_USER, "--", "test", "-x", str(directory)],
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_clean_env(),
        )
        return result.returncode == 0

    # ------------------------------------------------------------------ URLs

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``database`` over the Unix socket."""
        return self._url("postgresql+psycopg", database)

    def libpq_url(self, database: str = DEFAULT_DATABASE) -> str:
        """libpq/psycopg connection URI for ``database`` over the Unix socket."""
        return self._url("postgresql", database)

    @property
    def dsn(self) -> str:
        """``libpq_url()`` of the default database."""
        return self.libpq_url()

    def _url(self, scheme: str, database: str) -> str:
        # The port is explicit so that a PGPORT in the caller's environment cannot redirect libpq.
        return (
            f"{scheme}://{SUPERUSER}@/{quote(database, safe='')}"
            f"?host={quote(str(self.socket_dir), safe='/')}&port={self.port}"
        )

    # ------------------------------------------------------------------ lifecycle

    def status(self) -> bool:
        """Whether this cluster's postmaster is running."""
        return self._running_pid(self.data_dir) is not None

    def ensure(self) -> LocalCluster:
        """Create (initdb) the cluster if needed, start it if not running, wait until it accepts
        connections, create database ``truckroll`` and the ``postgis`` extension in it. Idempotent."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.throwaway:  # before anything exists, so that a kill at any later point leaves it recorded
                self._record_owner()
            home = self._locate(create=True)
            data = home / "data"
            major = self._data_major(data)
            pg = find_postgres(major)
            if major is None:
                self._initdb(pg, home)
            if self._running_pid(data) is None:
                self._start(pg, data)
            else:
                self._wait_ready(pg, START_TIMEOUT)
            self._psql_script(
                pg,
                "postgres",
                "SET client_min_messages = warning;\n"
                f"SELECT 'CREATE DATABASE {_ident(DEFAULT_DATABASE)}' WHERE NOT EXISTS "
                f"(SELECT FROM pg_database WHERE datname = '{DEFAULT_DATABASE}')\\gexec\n"
                f"\\connect {DEFAULT_DATABASE}\n"
                "SET client_min_messages = warning;\n"
                "CREATE EXTENSION IF NOT EXISTS postgis;\n",
            )
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (fast shutdown: roll back open transactions, disconnect clients)."""
        with self._lock():
            data = self.data_dir
            pid = self._running_pid(data)
            if pid is None:
                return
            self._signal(pid, signal.SIGINT)  # what `pg_ctl stop -m fast` sends
            # A server stopped with SIGSTOP (a debugger, a test of a frozen database killed part-way)
            # acts on the request only once it runs again; its children as well.
            for process in (pid, *_children(pid)):
                self._signal(process, signal.SIGCONT)
            if self._wait_gone(pid, timeout):
                return
            self._signal(pid, signal.SIGQUIT)  # immediate shutdown
            if not self._wait_gone(pid, 10):
                raise ClusterError(f"PostgreSQL (pid {pid}) did not stop; see {self.log_file}")

    def destroy(self) -> None:
        """Stop the server and delete the cluster's files (data, fallback directory, socket directory)."""
        self.stop()
        home = self.home
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(home / "data")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(home / "data.tmp")
        if home == self.fallback_home:  # never rmtree an arbitrary path read from `location`
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(home)
        for leftover in (self.location_file, self.root / ".lock", self.owner_record):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.socket_dir)

    # ------------------------------------------------------------------ databases

    def create_database(self, name: str, template: str | None = None) -> None:
        """``CREATE DATABASE name [TEMPLATE template]``. A template must have no open connections."""
        sql = f"CREATE DATABASE {_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_ident(template)}"
        self._psql_script(self._pg(), "postgres", sql + ";\n")

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS name WITH (FORCE)``: open connections to it are terminated."""
        self._psql_script(self._pg(), "postgres", f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE);\n")

    def psql_argv(self, database: str = DEFAULT_DATABASE) -> list[str]:
        """The command line of an interactive psql connected to ``database``."""
        return [
            self._pg().bin("psql"),
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
        ]

    # ------------------------------------------------------------------ internals

    @property
    def major(self) -> str | None:
        """The PostgreSQL major of the data directory (None before the first ``ensure()``)."""
        return self._data_major(self.data_dir)

    def _pg(self) -> PgInstall:
        return find_postgres(self._data_major(self.data_dir), require_postgis=False)

    @staticmethod
    def _data_major(data: Path) -> str | None:
        try:
            return (data / "PG_VERSION").read_text().strip() or None
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise ClusterError(
                f"cannot read {data}: permission denied (the cluster belongs to another OS user; "
                "run this as that user or as root)"
            ) from exc

    @contextlib.contextmanager
    def _lock(self):
        """Serialize ensure/stop across processes (flock on ``root/.lock``; none if root is gone)."""
        if not self.root.is_dir():
            yield
            return
        fd = os.open(self.root / ".lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _runuser() -> str:
        found = shutil.which("runuser") or next(
            (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
        )
        if found is None:
            raise ClusterError("running as root needs `runuser` (util-linux) to start PostgreSQL")
        return found

    def _server_account(self, data: Path) -> pwd.struct_passwd | None:
        """The OS account that runs the server, or None for "the current user" (when not root)."""
        if not _is_root():
            return None
        for candidate in (data, data.with_name("data.tmp")):
            try:
                uid = candidate.stat().st_uid
            except FileNotFoundError:
                continue
            if uid != 0:
                try:
                    return pwd.getpwuid(uid)
                except KeyError:
                    break  # owner has no name: take the data directory over for `postgres` below
        try:
            return pwd.getpwnam(SERVER_OS_USER)
        except KeyError as exc:
            raise ClusterError(
                f"PostgreSQL refuses to run as root and there is no `{SERVER_OS_USER}` OS user "
                "(it comes with the postgresql package)"
            ) from exc

    def _run(
        self,
        argv: list[str],
        *,
        account: pwd.struct_passwd | None = None,
        input: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if account is not None and account.pw_uid != os.geteuid():
            argv = [self._runuser(), "-u", account.pw_name, "--", *argv]
        try:
            return subprocess.run(
                argv,
                cwd="/",
                env=_clean_env(),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"`{' '.join(argv)}` timed out after {timeout} s") from exc

    @staticmethod
    def _chown(path: Path, account: pwd.struct_passwd | None) -> None:
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)

    def _initdb(self, pg: PgInstall, home: Path) -> None:
        """initdb into ``home/data.tmp``, configure, then rename it to ``home/data`` (atomic)."""
        data = home / "data"
        if data.exists() and any(data.iterdir()):
            raise ClusterError(f"{data} is not empty but has no PG_VERSION: not a data directory; remove it")
        with contextlib.suppress(FileNotFoundError):
            data.rmdir()
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / "data.tmp"
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)  # left over by an interrupted initdb
        tmp.mkdir(mode=0o700)
        account = self._server_account(tmp)
        self._chown(tmp, account)
        locale = "C.UTF-8" if any(os.path.isdir(d) for d in _C_UTF8_LOCALE_DIRS) else "C"
        argv = [
            pg.bin("initdb"),
            "-D",
            str(tmp),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            f"--locale={locale}",
        ]
        if self.fast:
            argv.append("--no-sync")
        result = self._run(argv, account=account, timeout=300)
        if result.returncode != 0:
            raise ClusterError(f"initdb failed (exit {result.returncode}):\n{result.stdout}{result.stderr}".rstrip())
        self._write_settings(tmp, account)
        os.rename(tmp, data)

    def _write_settings(self, data: Path, account: pwd.struct_passwd | None) -> None:
        """(Re)write truckroll.conf and make sure postgresql.conf includes it."""
        main_conf = data / "postgresql.conf"
        if _INCLUDE_LINE not in main_conf.read_text(errors="replace"):
            with open(main_conf, "a") as conf:  # appending keeps the file's owner
                conf.write(
                    "\n# Settings managed by infra/postgis.py (rewritten at every start). Put your own in\n"
                    "# postgresql.auto.conf (ALTER SYSTEM), which is read after this file.\n"
                    f"{_INCLUDE_LINE}\n"
                )
        durable = "off" if self.fast else "on"
        text = (
            "# Written by infra/postgis.py at every start: do not edit.\n"
            "listen_addresses = ''\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "jit = off\n"
            "shared_buffers = 256MB\n"
            "max_connections = 200\n"
            f"fsync = {durable}\n"
            f"synchronous_commit = {durable}\n"
            f"full_page_writes = {durable}\n"
        )
        path = data / "truckroll.conf"
        tmp = data / "truckroll.conf.tmp"
        tmp.write_text(text)
        self._chown(tmp, account)
        tmp.replace(path)

    def _running_pid(self, data: Path) -> int | None:
        """The PID of the postmaster serving ``data``, if one is running."""
        try:
            pid = _read_pid(data / "postmaster.pid")
        except PermissionError as exc:
            raise ClusterError(
                f"cannot read {data}: permission denied (the cluster belongs to another OS user)"
            ) from exc
        if pid is None:
            return None
        served = _postmaster_data_dir(pid)
        if served is None:
            return None
        if served == "" or os.path.realpath(served) == os.path.realpath(data):
            return pid
        return None

    def _clear_stale_locks(self, data: Path) -> None:
        """Remove lock files left by a crashed server whose PID may since have been reused.

        PostgreSQL removes lock files naming dead processes itself, but not ones naming a live
        unrelated process (common after a reboot or in containers, where PIDs are small)."""
        with contextlib.suppress(FileNotFoundError):
            (data / "postmaster.pid").unlink()
        sock_lock = self.socket_dir / f".s.PGSQL.{self.port}.lock"
        pid = _read_pid(sock_lock) if self.socket_dir.is_dir() else None
        if pid is None:
            return
        served = _postmaster_data_dir(pid)
        if served:
            # A server still holds our private socket directory although ours is not running: it serves
            # a data directory that was deleted or replaced (e.g. `rm -rf .truckroll` while it ran).
            # Such an orphan would shut itself down within a minute; do it now.
            if _read_pid(Path(served) / "postmaster.pid") != pid:
                self._signal(pid, signal.SIGQUIT)
                self._wait_gone(pid, 10)
            else:
                raise ClusterError(f"{self.socket_dir} is in use by the PostgreSQL server of {served} (pid {pid})")
        for name in (f".s.PGSQL.{self.port}.lock", f".s.PGSQL.{self.port}"):
            with contextlib.suppress(FileNotFoundError):
                (self.socket_dir / name).unlink()

    def _prepare_socket_dir(self, account: pwd.struct_passwd | None) -> None:
        """Create the socket directory, mode 0700, owned by the server's OS user."""
        uid = account.pw_uid if account else os.geteuid()
        gid = account.pw_gid if account else os.getegid()
        path = str(self.socket_dir)
        for _attempt in range(2):
            created = False
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
                created = True
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise ClusterError(f"{path} exists but is not a usable directory: {exc}") from exc
            try:
                st = os.fstat(fd)
                if created and st.st_uid != uid:
                    os.fchown(fd, uid, gid)
                    st = os.fstat(fd)
                if st.st_uid != uid:
                    if not _is_root():
                        raise ClusterError(f"{path} belongs to uid {st.st_uid}, not to you: remove it")
                    # Someone else's directory: do not adopt its contents, start from scratch.
                    shutil.rmtree(path)
                    continue
                if stat.S_IMODE(st.st_mode) != 0o700:
                    os.fchmod(fd, 0o700)
                if st.st_gid != gid and _is_root():
                    os.fchown(fd, uid, gid)
                return
            finally:
                os.close(fd)
        raise ClusterError(f"could not create a private socket directory at {path}")

    def _start(self, pg: PgInstall, data: Path) -> None:
        account = self._server_account(data)
        if account is not None:
            st = data.stat()
            if st.st_uid != account.pw_uid:  # data directory owned by root: hand it over
                for dirpath, _dirs, files in os.walk(data):
                    os.chown(dirpath, account.pw_uid, account.pw_gid, follow_symlinks=False)
                    for name in files:
                        os.chown(os.path.join(dirpath, name), account.pw_uid, account.pw_gid, follow_symlinks=False)
        self._write_settings(data, account)
        self._clear_stale_locks(data)
        self._prepare_socket_dir(account)
        log = data / "server.log"
        argv = [pg.bin("pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-s"]
        argv += ["-t", str(int(START_TIMEOUT))]
        result = self._run(argv, account=account, timeout=START_TIMEOUT + 30)
        if result.returncode != 0 or self._running_pid(data) is None:
            output = f"{result.stdout}{result.stderr}".strip()
            raise ClusterError(
                f"PostgreSQL {pg.major} failed to start (pg_ctl exit {result.returncode})"
                + (f": {output}" if output else "")
                + f"\n--- last lines of {log} ---\n{_tail(log)}"
            )
        self._wait_ready(pg, START_TIMEOUT)

    def _wait_ready(self, pg: PgInstall, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        argv = [pg.bin("pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port)]
        argv += ["-U", SUPERUSER, "-d", "postgres"]
        while True:
            result = self._run(argv, timeout=timeout)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"PostgreSQL at {self.socket_dir} does not accept connections after {timeout:.0f} s"
                    f"\n--- last lines of {self.log_file} ---\n{_tail(self.log_file)}"
                )
            time.sleep(0.05)

    def _psql_script(self, pg: PgInstall, database: str, script: str) -> str:
        argv = [pg.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-f", "-"]
        result = self._run(argv, input=script, timeout=300)
        if result.returncode != 0:
            raise ClusterError(
                f"psql on {self.socket_dir} ({database}) failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        """Wait for a postmaster to exit (it removes its lock files before exiting)."""
        deadline = time.monotonic() + timeout
        while _postmaster_data_dir(pid) is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


# ---------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m infra.postgis",
        description="Manage the private PostgreSQL + PostGIS cluster of this checkout.",
        epilog="psql: arguments after `--` go to psql, e.g. `psql -- -c 'SELECT postgis_version()'`.",
    )
    parser.add_argument("command", choices=["start", "stop", "status", "url", "psql"])
    parser.add_argument("--root", type=Path, default=None, help=f"cluster root (default: {default_root()})")
    parser.add_argument("--database", "-d", default=DEFAULT_DATABASE, help="database for url/psql")
    parser.add_argument("--fast", action="store_true", help="start without fsync (throwaway clusters)")
    parser.add_argument("--libpq", action="store_true", help="url: print a libpq URI instead of SQLAlchemy's")
    args_in = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    args = parser.parse_args(args_in)
    if extra and args.command != "psql":
        parser.error("arguments after `--` are only for psql")
    cluster = LocalCluster(args.root if args.root is not None else default_root(), fast=args.fast)
    try:
        if args.command == "start":
            cluster.ensure()
            print(
                f"PostgreSQL {cluster.major} + PostGIS running: data {cluster.data_dir}, "
                f"socket {cluster.socket_dir}, url {cluster.url()}"
            )
        elif args.command == "stop":
            was_running = cluster.status()
            cluster.stop()
            print(f"stopped ({cluster.data_dir})" if was_running else f"not running ({cluster.data_dir})")
        elif args.command == "status":
            running = cluster.status()
            print(f"{'running' if running else 'stopped'}: {cluster.data_dir}")
            return 0 if running else 3
        elif args.command == "url":
            print(cluster.libpq_url(args.database) if args.libpq else cluster.url(args.database))
        elif args.command == "psql":
            cluster.ensure()
            cmd = cluster.psql_argv(args.database) + extra
            sys.stdout.flush()
            os.execv(cmd[0], cmd)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
