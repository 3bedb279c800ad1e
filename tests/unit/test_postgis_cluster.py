"""Real tests of infra.postgis.LocalCluster: they start PostgreSQL + PostGIS servers (no mocks)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from infra import postgis
from infra.postgis import ClusterError, LocalCluster

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0


def query(cluster: LocalCluster, sql: str, database: str = "truckroll"):
    with psycopg.connect(cluster.libpq_url(database), autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql).fetchone()


def execute(cluster: LocalCluster, sql: str, database: str = "truckroll") -> None:
    with psycopg.connect(cluster.libpq_url(database), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def postmaster_pid(cluster: LocalCluster) -> int:
    return int((cluster.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.fixture(scope="module")
def cluster():
    """A fast cluster whose root is reachable by every user (mode-755 parent): files stay in the root."""
    parent = Path(tempfile.mkdtemp(prefix="truckroll-test-"))
    parent.chmod(0o755)
    c = LocalCluster(parent / "postgres", fast=True, throwaway=True)
    try:
        c.ensure()
        yield c
    finally:
        c.destroy()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def private_parent():
    """A mode-700 directory, like root's home: the postgres OS user cannot traverse it."""
    parent = Path(tempfile.mkdtemp(prefix="truckroll-private-"))
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def test_postgis_works_and_settings_apply(cluster):
    assert cluster.status()
    assert cluster.data_dir == cluster.root / "data"
    assert query(cluster, "SELECT postgis_version()")[0].startswith("3.")
    assert query(cluster, "SELECT ST_AsText(ST_MakePoint(2.35, 48.85)::geography)")[0] == "POINT(2.35 48.85)"
    settings = query(
        cluster,
        "SELECT current_setting('jit'), current_setting('listen_addresses'), current_setting('fsync'),"
        " current_setting('synchronous_commit'), current_setting('full_page_writes'),"
        " current_setting('max_connections'), current_setting('shared_buffers'), current_user",
    )
    assert settings == ("off", "", "off", "off", "off", "200", "256MB", "postgres")
    assert (cluster.data_dir / "server.log").stat().st_size > 0


def test_socket_dir_is_private_and_short(cluster):
    st = os.lstat(cluster.socket_dir)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    owner = pwd.getpwnam("postgres").pw_uid if IS_ROOT else os.geteuid()
    assert st.st_uid == owner == cluster.data_dir.stat().st_uid
    assert len(str(cluster.socket_dir / ".s.PGSQL.5432")) < 100
    assert cluster.url() == (f"postgresql+psycopg://postgres@/truckroll?host={cluster.socket_dir}&port=5432")
    assert cluster.dsn == cluster.libpq_url() == cluster.url().replace("+psycopg", "")


def test_sqlalchemy_url_connects(cluster):
    engine = sqlalchemy.create_engine(cluster.url(), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_database()")).scalar() == "truckroll"
    finally:
        engine.dispose()


def test_ensure_twice_is_a_noop(cluster):
    pid = postmaster_pid(cluster)
    started = time.monotonic()
    cluster.ensure()
    cluster.ensure()
    assert time.monotonic() - started < 2
    assert postmaster_pid(cluster) == pid


def test_stop_then_ensure_keeps_data(cluster):
    execute(cluster, "CREATE TABLE IF NOT EXISTS kept (x int); INSERT INTO kept VALUES (42)")
    cluster.stop()
    assert not cluster.status()
    with pytest.raises(psycopg.OperationalError):
        query(cluster, "SELECT 1")
    cluster.stop()  # stopping a stopped cluster is fine
    cluster.ensure()
    assert cluster.status()
    assert query(cluster, "SELECT x FROM kept")[0] == 42


def test_create_and_drop_database_from_template(cluster):
    cluster.drop_database("scratch")
    cluster.create_database("scratch", template="truckroll")
    assert query(cluster, "SELECT postgis_version() IS NOT NULL", "scratch")[0]
    conn = psycopg.connect(cluster.libpq_url("scratch"), autocommit=True)  # left open on purpose
    try:
        cluster.drop_database("scratch")  # WITH (FORCE) terminates it
    finally:
        conn.close()
    with pytest.raises(ClusterError, match="already exists"):
        cluster.create_database("truckroll")


def test_start_after_crash_and_with_reused_pid_in_lock_files(cluster):
    os.kill(postmaster_pid(cluster), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while cluster.status() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not cluster.status()
    cluster.ensure()
    assert query(cluster, "SELECT x FROM kept")[0] == 42

    # After a crash (or a reboot) the PID in the lock files may belong to an unrelated live process,
    # which PostgreSQL alone refuses to ignore.
    cluster.stop()
    with subprocess.Popen(["sleep", "60"]) as stranger:
        try:
            pidfile = cluster.data_dir / "postmaster.pid"
            lines = [str(stranger.pid), str(cluster.data_dir), "0", "5432", str(cluster.socket_dir)]
            pidfile.write_text("\n".join(lines) + "\n")
            (cluster.socket_dir / ".s.PGSQL.5432.lock").write_text("\n".join(lines) + "\n")
            assert not cluster.status()
            cluster.ensure()
            assert query(cluster, "SELECT 1")[0] == 1
        finally:
            stranger.kill()


def test_two_clusters_side_by_side_and_mode_700_fallback(cluster, private_parent):
    root = private_parent / "checkout" / ".truckroll" / "postgres"
    # Two processes (here: threads with their own LocalCluster) racing to create the same cluster.
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(lambda: LocalCluster(root, fast=True).ensure()) for _ in range(2)]:
            future.result()
    other = LocalCluster(root, fast=True)
    try:
        assert other.status() and cluster.status()
        assert other.socket_dir != cluster.socket_dir
        if IS_ROOT:  # postgres cannot reach the root: files live elsewhere, the root says where
            assert other.home == Path("/var/lib/truckroll") / other.fallback_home.name
            assert (root / "location").read_text().strip() == str(other.home)
        else:
            assert other.home == root
        assert query(other, "SELECT postgis_version()")[0].startswith("3.")
        execute(other, "CREATE TABLE only_here (x int)")
        assert query(other, "SELECT to_regclass('only_here') IS NOT NULL")[0]
        assert not query(cluster, "SELECT to_regclass('only_here') IS NOT NULL")[0]
        other.stop()
        assert not other.status() and cluster.status()
        assert LocalCluster(root).ensure().status()  # a new instance finds the recorded location
        assert query(other, "SELECT to_regclass('only_here') IS NOT NULL")[0]
    finally:
        other.destroy()
    assert not other.status()
    assert not other.fallback_home.exists()
    assert not (root / "location").exists()


def test_cli_runs_without_site_packages(cluster):
    # -S: no site-packages, as under the bare system python3 before any venv exists.
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-S", "-m", "infra.postgis", *args, "--root", str(cluster.root)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert cli("url").stdout.strip() == cluster.url()
    status = cli("status")
    assert status.returncode == 0 and status.stdout.startswith("running")
    start = cli("start")
    assert start.returncode == 0 and str(cluster.data_dir) in start.stdout
    assert len(start.stdout.strip().splitlines()) == 1
    out = subprocess.run(
        [sys.executable, "-S", "-m", "infra.postgis", "psql", "--root", str(cluster.root)]
        + ["--", "-AtXc", "SELECT postgis_lib_version()"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.startswith("3."), out.stderr


def test_missing_binaries_or_postgis_give_install_hints(monkeypatch, tmp_path):
    with pytest.raises(ClusterError, match=r"apt-get install postgresql-9\.9 postgresql-9\.9-postgis-3"):
        postgis.find_postgres("9.9")
    newest = postgis.installed_majors()[-1]
    monkeypatch.setattr(postgis, "PG_SHARE", tmp_path)  # a share directory without postgis.control
    with pytest.raises(ClusterError, match=rf"apt-get install postgresql-{newest}-postgis-3"):
        postgis.find_postgres()
    monkeypatch.setattr(postgis, "PG_LIB", tmp_path / "nothing")
    with pytest.raises(ClusterError, match="no PostgreSQL server found"):
        postgis.find_postgres()


# A test run's process: creates its throwaway cluster, says so, then waits to be killed.
OWNER = """
import sys
from infra.postgis import LocalCluster
LocalCluster(sys.argv[1], fast=True, throwaway=True).ensure()
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_killed_runs_cluster_is_reaped_and_a_running_ones_is_not(cluster, private_parent):
    # A pytest run's root is under a mode-700 directory: as root its files live in /var/lib/truckroll.
    root = private_parent / "pytest-7" / "postgres0"
    orphan = LocalCluster(root)
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(root)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline() == "ready\n"
        home, pid = orphan.home, postmaster_pid(orphan)
        assert home == (orphan.fallback_home if IS_ROOT else root)
        assert json.loads(orphan.owner_record.read_text())["pid"] == owner.pid

        assert root not in postgis.reap_orphans()  # its owner still runs
        assert orphan.status()

        owner.kill()  # SIGKILL: no finaliser runs, the cluster stays up
        owner.wait()
        assert orphan.status()
        assert root in postgis.reap_orphans()
        assert not orphan.status() and postgis._postmaster_data_dir(pid) is None
        assert not (home / "data").exists() and not orphan.socket_dir.exists()
        assert not orphan.owner_record.exists()
        if IS_ROOT:
            assert not home.exists()
        assert cluster.status()  # this process's own throwaway cluster is left alone
        assert root not in postgis.reap_orphans()
    finally:
        owner.kill()
        owner.wait()
        LocalCluster(root).destroy()


def test_an_owner_is_its_pid_and_start_time_not_a_reused_pid(private_parent):
    mine = LocalCluster(private_parent / "postgres", fast=True, throwaway=True).ensure()
    try:
        record = json.loads(mine.owner_record.read_text())
        assert record["pid"] == os.getpid()
        assert mine.root not in postgis.reap_orphans()
        # The recorded owner had this PID but started at another moment: it is gone and the PID was reused.
        mine.owner_record.write_text(json.dumps({**record, "start": record["start"] - 1}))
        assert mine.root in postgis.reap_orphans()
        assert not mine.status() and not mine.data_dir.exists()
    finally:
        mine.destroy()


def test_stop_resumes_a_frozen_server(private_parent):
    frozen = LocalCluster(private_parent / "postgres", fast=True).ensure()
    pid = postmaster_pid(frozen)
    processes = [pid, *postgis._children(pid)]
    try:
        for process in processes:
            os.kill(process, signal.SIGSTOP)
        started = time.monotonic()
        frozen.stop()
        assert time.monotonic() - started < 10 and not frozen.status()
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGCONT)
        frozen.destroy()
