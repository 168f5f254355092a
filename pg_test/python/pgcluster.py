"""Throw-away Postgres 15 servers for tests that need a server of their own: crash recovery
(kill -9 of the postmaster and all its children), streaming replicas, settings of their own.

Every server lives in /var/tmp/hnsw_ext/tests/<name>/ (data/, server.log, the socket), runs as
the `postgres` user (the tests run as root, and Postgres refuses to) and listens on 127.0.0.1.

    srv = Server("example", 5488)          # ports 5481-5489 are the tests'
    try:
        srv.init().configure(shared_buffers="256MB").start()
        with srv.connect() as conn: ...        # autocommit; or psycopg.connect(srv.dsn)
        srv.kill9(); srv.start()               # crash, then crash recovery
        sb = srv.standby("example_sb", 5489)   # pg_basebackup -R, started
        srv.wait_for_replay(sb)                # standby has replayed all the primary wrote
    finally:
        sb.cleanup(); srv.cleanup()            # stop whatever state they are in

In a pytest fixture, register `cleanup` with request.addfinalizer before starting the server.
"""

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import time

import psycopg

PG_BIN = os.path.dirname(os.environ.get("HNSW_EXT_PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config"))
TESTS_DIR = os.environ.get("HNSW_EXT_TESTS_DIR", "/var/tmp/hnsw_ext/tests")
PORT_OFFSET = int(os.environ.get("HNSW_EXT_PORT_OFFSET", "0"))
CONF = "hnsw_ext_test.conf"

# pg_ctl daemonizes the postmaster, so it is reparented when pg_ctl exits, normally to PID 1.
# Where PID 1 does not reap orphans (containers, micro-VM init processes), a killed postmaster
# stays a zombie, kill(pid, 0) still succeeds on it and the restarted server refuses to start
# ("lock file postmaster.pid already exists"). Becoming a child subreaper makes the orphaned
# postmasters (and the children of a killed one) ours, and we reap them by pid.
PR_SET_CHILD_SUBREAPER = 36
try:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
except (OSError, AttributeError):
    pass


def as_postgres(cmd, check=True, timeout=300):
    """Run a shell command line as `postgres`, without RUST_BACKTRACE (as .ci/lib.sh does)."""
    full = f"unset RUST_BACKTRACE; {cmd}"
    if os.geteuid() == 0:
        argv = ["su", "postgres", "-c", full]
    else:  # already an unprivileged user: assume it owns the directories
        argv = ["bash", "-c", full]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {cmd}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def _chown_postgres(path):
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _proc_state(pid):
    """The state letter of a process (R, S, Z, ...), or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2]


def _alive(pid):
    return _proc_state(pid) not in (None, "Z")


def _reap(pids):
    """Collect the exit status of those `pids` that are our (zombie) children; only these pids,
    never waitpid(-1), which would steal statuses that subprocess waits for."""
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


def _children(pid):
    """Direct children of a process, from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        for k in _children(todo.pop()):
            out.append(k)
            todo.append(k)
    return out


class Server:
    def __init__(self, name, port, base=TESTS_DIR):
        self.name = name
        # HNSW_EXT_PORT_OFFSET moves every test server, so two checkouts can test at once.
        self.port = port + PORT_OFFSET
        self.dir = os.path.join(base, name)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.socket_dir = self.dir
        self.settings = {}

    # -- setup -----------------------------------------------------------------------------

    def _fresh_dir(self):
        """Remove what an earlier run left (stopping a server still running there) and recreate."""
        pid = self.postmaster_pid()
        if pid is not None and _alive(pid):
            self.stop(mode="immediate", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        parent = os.path.dirname(self.dir)
        for d in (parent, os.path.dirname(parent)):
            _chown_postgres(d)
        _chown_postgres(self.dir)

    def init(self):
        self._fresh_dir()
        as_postgres(
            f"{PG_BIN}/initdb -D {shlex.quote(self.data)} -U postgres --auth=trust -E UTF8 --locale=C.UTF-8"
        )
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\ninclude_if_exists = '{CONF}'\n")
        self.configure()
        return self

    def configure(self, **settings):
        """Write port, addresses and the socket directory, plus `settings` (kept across calls),
        to the data directory's included config file. Takes effect at the next (re)start."""
        self.settings.update(settings)
        lines = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.socket_dir}'",
        ]
        for k, v in self.settings.items():
            if isinstance(v, bool):
                v = "on" if v else "off"
            if isinstance(v, str):
                v = "'" + v.replace("'", "''") + "'"
            lines.append(f"{k} = {v}")
        path = os.path.join(self.data, CONF)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        _chown_postgres(path)
        return self

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout=300):
        as_postgres(
            f"{PG_BIN}/pg_ctl -D {shlex.quote(self.data)} -w -t {timeout} -l {shlex.quote(self.log)} start",
            timeout=timeout + 30,
        )
        return self

    def stop(self, mode="fast", check=True):
        pid = self.postmaster_pid()
        as_postgres(f"{PG_BIN}/pg_ctl -D {shlex.quote(self.data)} -w -m {mode} stop", check=check)
        if pid is not None:
            deadline = time.time() + 30
            while _alive(pid) and time.time() < deadline:
                time.sleep(0.02)
            _reap([pid])
        return self

    def restart(self, mode="fast"):
        self.stop(mode)
        return self.start()

    def is_running(self):
        return as_postgres(f"{PG_BIN}/pg_ctl -D {shlex.quote(self.data)} status", check=False).returncode == 0

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (FileNotFoundError, ValueError):
            return None

    def kill9(self, timeout=30):
        """A real crash: stop the postmaster and every process under it at once (SIGSTOP, so
        nothing moves on and no new child starts while the list is taken), then SIGKILL them
        all and wait until they are gone. Postmaster children each lead a process group of
        their own, so the process tree is walked rather than a group signalled."""
        pid = self.postmaster_pid()
        if pid is None or not _alive(pid):
            raise RuntimeError(f"{self.name}: no running postmaster to kill")
        os.kill(pid, signal.SIGSTOP)
        procs = [pid]
        for _ in range(3):  # children forked just before the stop show up on a second look
            for k in _descendants(pid):
                if k not in procs:
                    try:
                        os.kill(k, signal.SIGSTOP)
                    except ProcessLookupError:
                        continue
                    procs.append(k)
        for p in procs:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        while True:
            _reap(procs)
            if not any(_alive(p) for p in procs) and _proc_state(pid) is None:
                return procs
            if time.time() > deadline:
                states = {p: _proc_state(p) for p in procs}
                raise RuntimeError(f"{self.name}: processes survive SIGKILL (or stay unreaped): {states}")
            time.sleep(0.02)

    def cleanup(self):
        """Stop the server whatever its state (for finalizers); never raises."""
        try:
            pid = self.postmaster_pid()
            if pid is None or not _alive(pid):
                return
            try:
                self.stop(mode="fast")
            except Exception:
                try:
                    self.stop(mode="immediate")
                except Exception:
                    pass
            if _alive(pid):
                self.kill9()
        except Exception as e:  # a finalizer must not hide the test's own failure
            print(f"cleanup of {self.name}: {e}")

    # -- connections -----------------------------------------------------------------------

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def connect(self, **kw):
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kw)

    def sql(self, query, params=None):
        """Run one statement on a connection of its own and return its rows (or None)."""
        with self.connect() as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- replication -----------------------------------------------------------------------

    def standby(self, name, port, slot=None, start=True, **settings):
        """A streaming standby of this server: pg_basebackup -R (with a physical slot, so the
        primary keeps the WAL the standby has not received), its own port, socket and log,
        hot_standby on, then started."""
        sb = Server(name, port, base=os.path.dirname(self.dir))
        sb._fresh_dir()
        slot = slot or name
        as_postgres(
            f"{PG_BIN}/pg_basebackup -h 127.0.0.1 -p {self.port} -U postgres -D {shlex.quote(sb.data)}"
            f" -R -X stream -C -S {shlex.quote(slot)} -c fast"
        )
        sb.settings = dict(self.settings)
        sb.configure(hot_standby=True, **settings)  # replaces the primary's port and socket
        if start:
            sb.start()
        return sb

    def wait_for_replay(self, standby, timeout=120):
        """Wait until `standby` has replayed everything this (primary) server has written so far."""
        with self.connect() as c:
            target = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.time() + timeout
        with standby.connect() as c:
            while True:
                replayed, behind = c.execute(
                    "SELECT pg_last_wal_replay_lsn(), pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())",
                    (target,),
                ).fetchone()
                if behind is not None and behind <= 0:
                    return replayed
                if time.time() > deadline:
                    raise TimeoutError(f"{standby.name} replayed {replayed}, primary is at {target}")
                time.sleep(0.05)
