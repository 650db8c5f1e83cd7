"""A real network file system for the tests: Samba on loopback, mounted through FUSE by smbnetfs.

`SmbShare` starts `smbd` with a throw-away smb.conf (its own private/lock/state/pid dirs, a
temporary directory as the share, a free port on 127.0.0.1), mounts the whole SMB network with
smbnetfs, and exposes the share as `<mount>/127.0.0.1:<port>/share`: libsmbclient ignores
`smb ports` on the client side but honours a `host:port` server name, so no port is shared with
anyone. Both daemons run in their own sessions, so stopping them cannot signal the test runner,
and die with it (PR_SET_PDEATHSIG) if the runner is killed. Every subprocess call has a timeout
and every touch of the mount outside a test happens in a child process with a timeout, so a
hung mount cannot hang the run. Where the machine cannot do this, `start` raises
`SmbUnavailable` with a specific reason, which the fixture turns into a skip.

Observed behaviour of this stack (Samba 4.17, smbnetfs 0.6.3, SMB3): symlink() fails with ENOSYS,
link() with EPERM, like Azure Files; statvfs is synthetic (`free_space_size` below); listxattr()
makes smbnetfs's libsmbclient worker die, so that call and the next calls for a few seconds fail
with EIO (shutil.copy2/copystat *from* the share hit this). A rename over an existing file is
libsmbclient's unlink, then rename, not one replace (ReplaceIfExists) as the kernel's SMB client asks of
Azure Files: seen from the server, the name is missing for a moment (18% of reads taken while
200 files replaced one another), and a reader holding the file open makes the rename fail with
EBUSY.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARE_NAME = "share"
# Marks our temporary directories, so a later run can find mounts an earlier, killed run left.
DIR_PREFIX = "pipeline-smb-"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 15.0
PR_SET_PDEATHSIG = 1

SMBD_CONF = """\
[global]
  netbios name = PIPELINETEST
  workgroup = WORKGROUP
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  # Azure Files speaks SMB3 without unix extensions: no symlinks, no POSIX modes.
  server min protocol = SMB3
  unix extensions = no
  map to guest = Bad User
  private dir = {state}/private
  lock directory = {state}/lock
  state directory = {state}/state
  cache directory = {state}/cache
  pid directory = {state}/pid
  ncalrpc dir = {state}/ncalrpc
  binddns dir = {state}/binddns
  passdb backend = tdbsam:{state}/private/passdb.tdb
  log file = {state}/log/smbd.log
  max log size = 1000
  # samba-dcerpcd would start in a session of its own; the share needs no RPC.
  rpc start on demand helpers = no
  usershare max shares = 0
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes

[{share}]
  path = {export}
  read only = no
  guest ok = yes
  guest only = yes
  # Every guest writes as root, the one user this file system has (start() demands root).
  force user = root
"""

# libsmbclient reads $HOME/.smb/smb.conf; this keeps the machine's /etc/samba out of it.
CLIENT_CONF = """\
[global]
  client min protocol = SMB3
  disable netbios = yes
"""

SMBNETFS_CONF = """\
smb_query_browsers "false"
use_libsecret "false"
local_charset "utf-8"
samba_charset "utf-8"
# Report 1 GiB free (in 4 KiB pages): the default of 0 looks like a full disk.
free_space_size "262144"
# A failed call must not make the next ones fail for 3 s ('neg_cache "false"' deadlocks 0.6.3).
neg_cache_timeout "1"
auth "guest" ""
"""


class SmbUnavailable(Exception):
    """This machine cannot serve and mount the share; the message says why."""


def _which(name: str) -> str | None:
    # smbd lives in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _die_with_parent() -> None:
    # Runs in the child before exec: a killed test runner takes its daemons (and the mount) along.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def fuse_mounts() -> dict[str, str]:
    """Mount point -> file system type, for every FUSE mount in /proc/mounts."""
    found = {}
    for line in Path("/proc/mounts").read_text().splitlines():
        _source, point, fstype, *_ = line.split()
        if fstype.startswith("fuse"):
            # /proc/mounts escapes blanks and backslashes as octal.
            found[re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), point)] = fstype
    return found


def session_members(sid: int) -> list[int]:
    """Live processes in session `sid` (what a daemon forked, whatever its process group)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, session.
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _probe(path: Path, timeout: float) -> str | None:
    """List `path` in a child process; None when it answers, else why not."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"listing {path} hung for {timeout:.0f} s"
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]


def _unmount(point: Path) -> None:
    """Unmount `point`, lazily when busy; never raises (teardown must go on)."""
    tool = _which("fusermount3") or _which("fusermount")
    commands = [[tool, "-u", str(point)], [tool, "-uz", str(point)]] if tool else []
    commands.append(["umount", "-l", str(point)])
    for command in commands:
        if str(point) not in fuse_mounts():
            return
        try:
            subprocess.run(command, capture_output=True, timeout=COMMAND_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            continue


def _owner_alive(base: Path) -> bool:
    try:
        os.kill(int((base / "owner").read_text()), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True  # not ours to judge: no readable owner yet
    return True


def reap_stale() -> None:
    """Clean up after runs killed before their teardown: lazily unmount our mounts whose daemon
    is gone (ENOTCONN), then remove our temporary trees whose owning process is gone."""
    for point, fstype in fuse_mounts().items():
        if fstype != "fuse.smbnetfs" or DIR_PREFIX not in point:
            continue
        try:
            alive = subprocess.run(["stat", point], capture_output=True, timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            alive = False
        if not alive:
            _unmount(Path(point))
    mounts = fuse_mounts()
    for base in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        if not _owner_alive(base) and not any(point.startswith(f"{base}/") for point in mounts):
            shutil.rmtree(base, ignore_errors=True)


class SmbShare:
    """One Samba server and its FUSE mount; `start()` then `stop()` (stop is always safe)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        (self.base / "owner").write_text(str(os.getpid()))
        self.export = self.base / "export"
        self.mount_point = self.base / "mnt"
        self.port = 0
        self._smbd: subprocess.Popen[bytes] | None = None
        self._smbnetfs: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        """The share as the client sees it, through the FUSE mount."""
        return self.mount_point / f"127.0.0.1:{self.port}" / SHARE_NAME

    @property
    def sessions(self) -> list[int]:
        """Session ids of the daemons started (each is its own session's leader)."""
        return [proc.pid for proc in (self._smbd, self._smbnetfs) if proc is not None]

    def server_path(self, path: Path) -> Path:
        """Where the server keeps `path` (a path under `root`) on its own disk."""
        return self.export / path.relative_to(self.root)

    def start(self) -> SmbShare:
        try:
            self._check_machine()
            reap_stale()
            self._start_smbd()
            self._mount()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_machine(self) -> None:
        missing = [tool for tool in ("smbd", "smbnetfs") if not _which(tool)]
        if not (_which("fusermount3") or _which("fusermount")):
            missing.append("fusermount3")
        if missing:
            raise SmbUnavailable(f"not installed: {', '.join(missing)} (make test-services installs them)")
        if os.geteuid() != 0:
            raise SmbUnavailable("smbd must run as root to serve a share (it switches user per session)")
        try:
            os.close(os.open("/dev/fuse", os.O_RDWR))
        except OSError as exc:
            raise SmbUnavailable(f"cannot open /dev/fuse: {exc.strerror}") from exc

    def _spawn(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _start_smbd(self) -> None:
        state = self.base / "server"
        for name in ("private", "lock", "state", "cache", "pid", "ncalrpc", "binddns", "log"):
            (state / name).mkdir(parents=True, exist_ok=True)
        (state / "private").chmod(0o700)
        self.export.mkdir()
        conf = state / "smb.conf"
        log = state / "log" / "smbd.out"
        # Another process may take the free port before smbd binds it; then try a new one.
        for _attempt in range(3):
            self.port = _free_port()
            conf.write_text(SMBD_CONF.format(port=self.port, state=state, export=self.export, share=SHARE_NAME))
            self._smbd = self._spawn(
                [
                    _which("smbd") or "smbd",
                    "--foreground",
                    "--no-process-group",
                    "--debug-stdout",
                    "-d",
                    "1",
                    "-s",
                    str(conf),
                ],
                log,
            )
            if self._wait_listening():
                return
            self._stop_session(self._smbd)
        raise SmbUnavailable(f"smbd did not listen on 127.0.0.1: {_tail(log)}")

    def _wait_listening(self) -> bool:
        assert self._smbd is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self._smbd.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _mount(self) -> None:
        home = self.base / "client"
        dot_smb = home / ".smb"
        dot_smb.mkdir(parents=True)
        # smbnetfs ignores its auth lines unless the config is private to the user.
        dot_smb.chmod(0o700)
        (dot_smb / "smb.conf").write_text(CLIENT_CONF)
        conf = dot_smb / "smbnetfs.conf"
        conf.write_text(SMBNETFS_CONF)
        conf.chmod(0o600)
        self.mount_point.mkdir()
        log = self.base / "smbnetfs.log"
        env = {**os.environ, "HOME": str(home)}
        self._smbnetfs = self._spawn(
            [_which("smbnetfs") or "smbnetfs", str(self.mount_point), "-f", "-o", f"config={conf}"], log, env
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while str(self.mount_point) not in fuse_mounts():
            if self._smbnetfs.poll() is not None:
                raise SmbUnavailable(f"smbnetfs could not mount (exit {self._smbnetfs.returncode}): {_tail(log)}")
            if time.monotonic() > deadline:
                raise SmbUnavailable(f"smbnetfs did not mount within {START_TIMEOUT_S:.0f} s: {_tail(log)}")
            time.sleep(0.05)
        why = "not tried"
        while time.monotonic() < deadline:
            why = _probe(self.root, timeout=max(1.0, deadline - time.monotonic()))
            if why is None:
                return
            time.sleep(0.2)
        raise SmbUnavailable(f"the share does not answer through the mount: {why}: {_tail(log)}")

    def _stop_session(self, proc: subprocess.Popen[bytes] | None) -> None:
        """End `proc` and everything it forked into its session: the leader first, so it can reap
        its own children, then whatever is left, TERM before KILL."""
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT_S)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            members = session_members(proc.pid)
            if not members:
                break
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while session_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Unmount, stop both daemons, remove the temporary tree. Safe after a partial start."""
        # No stat of the mount point first: on a hung mount that would hang too.
        _unmount(self.mount_point)
        # Unmounting ends smbnetfs; the session sweep catches its workers and anything left.
        if self._smbnetfs is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._smbnetfs.wait(timeout=STOP_TIMEOUT_S)
        self._stop_session(self._smbnetfs)
        self._stop_session(self._smbd)
        _unmount(self.mount_point)
        if str(self.mount_point) not in fuse_mounts():
            shutil.rmtree(self.base, ignore_errors=True)


def fresh_dir(parent: Path, name: str, timeout: float = START_TIMEOUT_S) -> Path:
    """mkdir a new directory on the share, waiting out the EIO spell after a worker restart."""
    path = parent / name
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.mkdir()
            return path
        except OSError as exc:
            if exc.errno != errno.EIO or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
