"""Start ``runner.py`` on one notebook in a sandbox: namespaces, a private uid, limits.

Three modes, chosen by :func:`detect_mode` (see README.md for what each guarantees):

* ``root``: ``unshare`` gives new network (loopback only), mount and PID namespaces;
  the set-up stage (:data:`STAGE`, run as root inside them) builds the notebook's own
  root on a tmpfs from an allowlist (:func:`root_binds`: the system, the interpreter, the
  course package as shown, its data; private ``/tmp``, ``/var/tmp`` and ``/dev/shm``),
  ``pivot_root``s into it, brings loopback up (``torch.distributed`` needs it), sets the
  rlimits and drops to a dedicated uid (``61000 + slot``, one per parallel job, so
  ``RLIMIT_NPROC`` counts one notebook's processes) with no capabilities through ``setpriv``.
* ``user``: the same inside a new user namespace (``unshare -r``); the runner keeps the
  namespace's uid 0 with an empty capability bounding set, so it can neither undo the
  mounts nor write to what is bound read-only.
* ``none`` (no namespaces allowed): a new session, the rlimits, a scrubbed environment and
  the runner's audit hook only.

The runner is PID 1 of its namespace: when it ends, or the grader kills it at the
wall-time limit, every process of the notebook dies and its tmpfs vanish. ``unshare`` is
started with a parent-death signal and the runner sets one too, so a grader that is
itself killed leaves nothing running.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RUNNER = Path(__file__).with_name("runner.py")
UID_BASE = 61000


@dataclass(frozen=True)
class Limits:
    timeout: float = 300.0      # wall seconds per notebook
    memory_mb: int = 2048       # RLIMIT_AS per process (torch + a course notebook: ~1 GB)
    output_mb: int = 16         # RLIMIT_FSIZE: any one file, stdout included
    processes: int = 96         # RLIMIT_NPROC: tasks (threads too) of the sandbox uid
    threads: int = 1            # OMP_NUM_THREADS: more can deadlock the DDP check's fork


# Runs as root inside the new namespaces; argv[1] is the JSON config. Only the stdlib.
# It builds the notebook's whole file system on a scratch tmpfs (the allowlist
# ``cfg["binds"]``: [source, target, read-only?]), pivots into it and drops the old root.
STAGE = r"""
import ctypes, fcntl, json, os, platform, resource, signal, socket, struct, sys
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
LOCKED = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: 1024, 2048: 2048, 4096: 1 << 21}
def mount(src, target, fstype, flags, data=""):
    if libc.mount(src.encode(), target.encode(), fstype.encode(), flags, data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {src} on {target}")
def place(target, like):
    os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
    if os.path.isdir(like):
        os.makedirs(target, 0o755, exist_ok=True)
    elif not os.path.exists(target):
        open(target, "w").close()
def bind(src, target, readonly):
    place(target, src)
    mount(src, target, "", MS_BIND | MS_REC)
    if readonly:  # keep the flags the source mount has locked (user namespaces refuse to drop them)
        kept = os.statvfs(src).f_flag
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
        flags |= sum(v for k, v in LOCKED.items() if kept & k)
        mount("none", target, "", flags)
try:
    new = cfg["scratch"]
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, size in (("/tmp", cfg["tmp_mb"]), ("/var/tmp", 16), ("/dev/shm", 64)):
        os.makedirs(new + path, 0o755)  # first, so what lives under /tmp can be bound into it
        mount("tmpfs", new + path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size}m,mode=1777")
    for src, target, readonly in sorted(cfg["binds"], key=lambda b: b[1]):
        if os.path.islink(src) and src in cfg["links"]:
            os.makedirs(os.path.dirname(new + target), 0o755, exist_ok=True)
            os.symlink(os.readlink(src), new + target)
        elif os.path.exists(src):
            bind(src, new + target, readonly)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    os.makedirs(new + "/proc", 0o555)
    mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(new + "/old", 0o755)
    os.chdir(new)
    number = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
    if number is None or libc.syscall(number, b".", b"old") != 0:
        raise OSError(ctypes.get_errno(), "pivot_root")
    os.chdir("/")
    if libc.umount2(b"/old", 2) != 0:  # MNT_DETACH
        raise OSError(ctypes.get_errno(), "umount the old root")
    os.rmdir("/old")
    for path in cfg["hidden"]:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
        elif os.path.exists(path):
            mount("/dev/null", path, "", MS_BIND)
    mount("none", "/", "", MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", 1 | 8 | 64))  # SIOCSIFFLAGS UP|LOOPBACK|RUNNING
    uid = cfg["uid"]
    for d in ("/tmp/work", "/tmp/home"):
        os.mkdir(d, 0o700)
        if uid is not None:
            os.chown(d, uid, uid)
except OSError as err:  # the grader names it (preflight): never a class of silent zeros
    os.write(cfg["fd"], f"sandbox set-up failed: {err}\n".encode())
    sys.exit(3)
out = os.open("/tmp/.output", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.dup2(out, 1); os.dup2(out, 2); os.close(out)
for res, value in cfg["rlimits"].items():
    resource.setrlimit(getattr(resource, res), (value, value))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
os.chdir("/tmp/work")
ids = ["--reuid", str(uid), "--regid", str(uid), "--clear-groups"] if uid is not None else []
os.execve(cfg["setpriv"], [cfg["setpriv"], *ids, "--bounding-set=-all", "--inh-caps=-all",
          "--no-new-privs", "--", *cfg["command"]], cfg["env"])
"""

@functools.lru_cache(maxsize=1)
def detect_mode() -> str:
    """'root', 'user' or 'none': the strongest isolation this machine allows us."""
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if not (unshare and setpriv):
        return "none"
    probe = ["-n", "-m", "-p", "-f", "--kill-child", "--mount-proc", "true"]
    candidates = (["root"] if os.geteuid() == 0 else []) + ["user"]
    for mode in candidates:
        flags = probe if mode == "root" else ["-r", *probe]
        if subprocess.run([unshare, *flags], capture_output=True).returncode == 0:
            return mode
    return "none"


def environment(limits: Limits, home: str) -> dict[str, str]:
    """A plain environment: nothing about grading, no instructor paths."""
    threads = str(limits.threads)
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONHASHSEED": "0"}


def rlimits(limits: Limits) -> dict[str, int]:
    mb = 1024 * 1024
    return {"RLIMIT_AS": limits.memory_mb * mb, "RLIMIT_CPU": int(limits.timeout * limits.threads) + 5,
            "RLIMIT_FSIZE": limits.output_mb * mb, "RLIMIT_NPROC": limits.processes,
            "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 256}


SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache",
          "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf",
          "/etc/passwd", "/etc/group", "/etc/hosts")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


@functools.lru_cache(maxsize=8)
def interpreter_paths(python: str, course: str) -> tuple[str, ...]:
    """The folders ``python`` needs: its prefixes and every entry of its ``sys.path`` (a
    venv's site-packages, folders that ``.pth`` files add), but never ``course`` itself or a
    folder holding it (the notebook sees the course's package and data only, as shown)."""
    probe = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"
    try:
        found = json.loads(subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True,
                                          cwd="/", timeout=60).stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        found = []
    found.append(str(Path(os.path.realpath(python)).parent.parent))
    above = {str(p) for p in [Path(course), *Path(course).parents]}
    return tuple(sorted({os.path.normpath(p) for p in found
                         if p and os.path.exists(p) and os.path.normpath(p) not in above}))


def root_binds(python: str, course: str, shown: list[tuple[str, str]]) -> list[list]:
    """What the notebook's new root holds: [source, target, read-only?] (see README.md)."""
    binds = [[p, p, True] for p in SYSTEM]
    binds += [[p, p, False] for p in DEVICES]
    binds += [[str(p), str(p), False] for p in sorted(Path("/dev").glob("nvidia*"))]
    if binds[-1][0].startswith("/dev/nvidia"):  # CUDA reads the PCI tree
        binds.append(["/sys", "/sys", True])
    else:
        binds.append(["/sys/devices/system/cpu", "/sys/devices/system/cpu", True])
    binds += [[p, p, True] for p in interpreter_paths(python, course) if p not in SYSTEM]
    binds += [[src, target, True] for src, target in shown]
    return binds


@dataclass
class Run:
    returncode: int | None      # None when it was killed at the wall-time limit
    lines: list[str]            # what the runner wrote on its results pipe
    seconds: float


def run(job: dict, course: Path, hidden: list[Path], limits: Limits, slot: int = 0,
        mode: str | None = None, python: str = sys.executable,
        shown: tuple[tuple[Path, Path], ...] = ()) -> Run:
    """Run ``job`` (the runner's stdin) under the sandbox; never raises for a bad notebook.

    ``shown`` are the (source, where) folders the notebook sees read-only besides the system
    and the interpreter (in mode none, where nothing can be mounted, the caller puts them on
    the path itself). ``mode`` defaults to :func:`detect_mode`; a weaker one may be asked
    for (tests do)."""
    mode = mode or detect_mode()
    runner = ["-I", "-c", RUNNER.read_text(encoding="utf-8")]
    hidden_paths = [str(p) for p in hidden if p.exists()]
    job = {**job, "hidden": [p.rstrip("/") + "/" for p in hidden_paths]}
    preexec, workdir = None, None
    read_end, write_end = os.pipe()
    if mode in ("root", "user"):
        scratch = "/dev/shm" if os.path.isdir("/dev/shm") else "/mnt"
        binds = root_binds(python, str(course), [(str(s), str(t)) for s, t in shown])
        cfg = {"scratch": scratch, "binds": binds,
               "links": [p for p in SYSTEM if os.path.islink(p)], "fd": write_end,
               "hidden": hidden_paths, "tmp_mb": 512, "uid": UID_BASE + slot if mode == "root" else None,
               "rlimits": rlimits(limits), "setpriv": shutil.which("setpriv"),
               "command": [python, *runner], "env": environment(limits, "/tmp/home")}
        flags = ["-n", "-m", "-p", "-f", "--kill-child", "--mount-proc"]
        argv = [shutil.which("setpriv"), "--pdeathsig", "KILL", "--",  # dies with the grader
                shutil.which("unshare"), *(flags if mode == "root" else ["-r", *flags]),
                python, "-I", "-c", STAGE, json.dumps(cfg)]
        env, cwd = {"PATH": "/usr/bin:/bin"}, "/"
    else:
        workdir = tempfile.mkdtemp(prefix="grade-")
        argv, env, cwd = [python, *runner], environment(limits, workdir), workdir
        limits_now = rlimits(limits)

        def preexec():
            for res, value in limits_now.items():
                resource.setrlimit(getattr(resource, res), (value, value))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    job["fd"] = write_end
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=cwd, env=env, pass_fds=(write_end,),
                                start_new_session=True, preexec_fn=preexec)
    finally:
        os.close(write_end)
    try:
        return _collect(proc, read_end, json.dumps(job).encode(), limits.timeout, start)
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _collect(proc: subprocess.Popen, read_end: int, stdin: bytes, timeout: float,
             start: float) -> Run:
    """Feed the job, read the results pipe (1 MB kept), enforce the wall time, kill the rest."""
    chunks: list[bytes] = []

    def reader() -> None:
        kept = 0
        with os.fdopen(read_end, "rb", buffering=0) as f:
            while data := f.read(65536):
                if kept < 1_000_000:
                    chunks.append(data)
                    kept += len(data)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    try:
        returncode = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        returncode = None
    seconds = time.monotonic() - start
    if returncode is None:  # kill the namespace's PID 1, so unshare returns once all of it is gone
        for child in _children(proc.pid):
            _kill(child)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session: unshare, or in mode none the runner's
    except ProcessLookupError:
        pass
    proc.wait()
    thread.join(timeout=10)
    text = b"".join(chunks).decode("utf-8", "replace")
    return Run(returncode, text.splitlines(), seconds)
