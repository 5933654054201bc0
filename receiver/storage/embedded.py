"""A private PostgreSQL cluster under a data directory of our own, for `make run` and the tests.

It uses the machine's PostgreSQL server binaries (Debian's postgresql package, Homebrew, …). It listens
on a unix socket inside its directory only, so it never collides with another server's port.
PostgreSQL refuses to run as root: when we are root, the cluster runs as the `postgres` user (or
`nobody`), which owns the data directory.

When the TimescaleDB extension is installed for that PostgreSQL, the cluster preloads it (with telemetry
off), so `make run` gets the timescale schema flavor; otherwise it stays plain PostgreSQL (native flavor).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DATABASE = "observatory"
SUPERUSER = "observatory"
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


class EmbeddedDatabaseError(Exception):
    """The embedded cluster could not be set up; the message says what to install or change."""


def find_bindir() -> Path:
    """Directory holding initdb, pg_ctl and postgres, newest major version first."""
    override = os.environ.get("OBSERVATORY_PG_BINDIR")
    candidates = [Path(override)] if override else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)

    def major(path: str) -> int:
        try:
            return int(Path(path).parent.name)
        except ValueError:
            return 0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)]
    candidates += [Path("/usr/local/pgsql/bin"), Path("/opt/homebrew/bin")]
    for directory in candidates:
        if all((directory / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise EmbeddedDatabaseError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install them "
        "(`apt-get install postgresql`, or run `make postgres`) or set database.url / DATABASE_URL "
        "to an existing server"
    )


def _pg_config_dir(bindir: Path, option: str) -> Path | None:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return None
    try:
        result = subprocess.run([str(pg_config), option], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return Path(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else None


def extension_installed(name: str, library: str, bindir: Path | None = None) -> bool:
    """True when extension `name` (its control file and `library`*.so) is installed for the PostgreSQL
    whose binaries are in `bindir`."""
    try:
        bindir = bindir or find_bindir()
    except EmbeddedDatabaseError:
        return False
    sharedir = _pg_config_dir(bindir, "--sharedir")
    libdir = _pg_config_dir(bindir, "--pkglibdir")
    if sharedir is None or libdir is None:
        return False
    return (sharedir / "extension" / f"{name}.control").exists() and any(libdir.glob(f"{library}*.so"))


def citus_installed(bindir: Path | None = None) -> bool:
    return extension_installed("citus", "citus", bindir)


def timescaledb_installed(bindir: Path | None = None) -> bool:
    """True when the timescaledb extension (control file and library) is installed for the PostgreSQL
    whose binaries are in `bindir`: then a cluster can preload it and migrate with the timescale flavor."""
    try:
        bindir = bindir or find_bindir()
    except EmbeddedDatabaseError:
        return False
    sharedir = _pg_config_dir(bindir, "--sharedir")
    libdir = _pg_config_dir(bindir, "--pkglibdir")
    if sharedir is None or libdir is None:
        return False
    return (sharedir / "extension" / "timescaledb.control").exists() and any(libdir.glob("timescaledb*.so"))


# Each database with the extension runs a job scheduler plus one worker per running job, all taken from
# max_worker_processes (default 8): too few and policies fail with "failed to start job".
# Settings for sustained ingest (README, "Database settings for sustained ingest" says why each, for
# external servers too). The write path at 10K spans/s writes ~20 MB/s of WAL: with the default 1 GB
# max_wal_size a checkpoint would start every minute, and after each one the first change to every page
# writes a full-page image. So checkpoints are spaced by time (15 min) with room for that WAL, and the
# full-page images are compressed.
INGEST_SETTINGS = {
    "max_connections": "100",
    "shared_buffers": "256MB",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "fsync": "on",
    "synchronous_commit": "on",
}
TIMESCALE_SETTINGS = {
    "shared_preload_libraries": "timescaledb",
    "timescaledb.telemetry_level": "off",
    "max_worker_processes": "32",
    "timescaledb.max_background_workers": "24",
}


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str


def _run_as() -> RunAs | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return RunAs(entry.pw_uid, entry.pw_gid, name)
    raise EmbeddedDatabaseError("running as root and no 'postgres' or 'nobody' user exists to run PostgreSQL")


class EmbeddedPostgres:
    def __init__(
        self,
        data_dir: str | Path,
        port: int = 5432,
        extra_settings: dict[str, str] | None = None,
        timescale: bool | None = None,
        listen_addresses: str = "",
    ) -> None:
        """`timescale`: preload TimescaleDB (True), never (False), or when it is installed (None).
        `listen_addresses`: TCP as well as the Unix socket (e.g. 127.0.0.1 for a Citus node)."""
        self.listen_addresses = listen_addresses
        self.root = Path(data_dir).resolve()
        self.data_dir = self.root / "data"
        self.port = port
        self.extra_settings = extra_settings or {}
        self.bindir = find_bindir()
        if timescale is None:
            timescale = "shared_preload_libraries" not in self.extra_settings and timescaledb_installed(self.bindir)
        self.timescale = timescale
        self.run_as = _run_as()
        self.log_file = self.root / "postgresql.log"
        self.socket_dir = self._socket_dir()
        self.started_here = False

    def _socket_dir(self) -> Path:
        if len(str(self.root)) <= _SOCKET_PATH_LIMIT:
            return self.root
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"llmobs-{digest}"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@/{DATABASE}?host={self.socket_dir}&port={self.port}"

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd="/",
            **kwargs,  # type: ignore[arg-type]
        )
        if check and result.returncode != 0:
            raise EmbeddedDatabaseError(
                f"{args[0]} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def _prepare_dirs(self) -> None:
        for directory in (self.root, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if self.run_as is None:
            return
        for directory in (self.root, self.socket_dir):
            os.chown(directory, self.run_as.uid, self.run_as.gid)
            os.chmod(directory, 0o700)
        # The server user must be able to reach its directory through every parent.
        for parent in self.root.parents:
            if not os.stat(parent).st_mode & 0o001:
                raise EmbeddedDatabaseError(
                    f"the PostgreSQL user {self.run_as.name!r} cannot enter {parent} (mode "
                    f"{oct(os.stat(parent).st_mode & 0o777)}); put database.embedded_dir elsewhere or "
                    f"`chmod o+x {parent}`"
                )

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        result = self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False)
        if result.returncode not in (0, 3):  # 3: no server running; anything else: cannot tell
            raise EmbeddedDatabaseError(f"pg_ctl status failed: {(result.stderr or result.stdout).strip()}")
        return result.returncode == 0

    def start(self) -> str:
        """Create (first time) and start the cluster; return its DSN. Reuses a running one."""
        self._prepare_dirs()
        if not self.initialized():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            self._write_settings()
        if not self.running():
            options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses='{self.listen_addresses}'"
            if self.timescale:
                # On the command line rather than in postgresql.auto.conf, so a cluster created before
                # TimescaleDB was installed gets it too (its recorded schema flavor does not change).
                options += "".join(f" -c {key}={value}" for key, value in TIMESCALE_SETTINGS.items())
            self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "120",
                "-o",
                options,
            )
            self.started_here = True
        self._ensure_database()
        return self.dsn

    def _has_lz4(self) -> bool:
        """Was this PostgreSQL built with lz4 (for wal_compression)? pg_config says; psql-only installs
        have no pg_config, and then the safe answer is no."""
        pg_config = self.bindir / "pg_config"
        if not pg_config.exists():
            return False
        done = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True, timeout=30)
        return "--with-lz4" in done.stdout

    def _write_settings(self) -> None:
        settings = {**INGEST_SETTINGS, "wal_compression": "lz4" if self._has_lz4() else "pglz", **self.extra_settings}
        conf = self.data_dir / "postgresql.auto.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write("\n# written by llm-observatory-receiver's embedded database\n")
            for key, value in settings.items():
                f.write(f"{key} = '{value}'\n")

    def _ensure_database(self) -> None:
        psql = self.bindir / "psql"
        exe = str(psql) if psql.exists() else "psql"
        base = [
            exe,
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
        ]
        found = subprocess.run(
            [*base, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if found.returncode != 0:
            raise EmbeddedDatabaseError(f"cannot query the embedded cluster: {found.stderr.strip()}")
        if found.stdout.strip() != "1":
            created = subprocess.run([*base, f"CREATE DATABASE {DATABASE}"], capture_output=True, text=True, timeout=60)
            if created.returncode != 0:
                raise EmbeddedDatabaseError(f"cannot create database {DATABASE}: {created.stderr.strip()}")

    def stop(self, mode: str = "fast") -> None:
        if self.initialized() and self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "120")

    def destroy(self) -> None:
        """Stop and delete the cluster (tests)."""
        with contextlib.suppress(EmbeddedDatabaseError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        if self.socket_dir != self.root:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
