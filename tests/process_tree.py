"""Processes a test starts (Snakemake, a launcher, a server), each in a session of its own and stopped as a
whole tree.

A test that times out (pytest-timeout raises in it), fails or is interrupted must not leave a Snakemake job,
its training workers or a server running into the next tests, holding cores and ports. subprocess.run's own
timeout kills only the direct child; here the child leads its own process group (start_new_session=True),
and kill_tree signals that group and every descendant psutil lists (torch's elastic launcher starts its
workers in sessions of their own, which the group alone would miss): SIGTERM first, so a server can shut
down cleanly, SIGKILL for what is still running after the grace period.
"""

import os
import signal
import subprocess
import time

import psutil


def popen(cmd, **kwargs) -> subprocess.Popen:
    """subprocess.Popen(cmd) in a session of its own: stop it with kill_tree."""
    return subprocess.Popen(cmd, start_new_session=True, **kwargs)


def _tree(proc: subprocess.Popen) -> list[psutil.Process]:
    for _ in range(10):  # a process may end while the tree is listed: list it again
        try:
            return psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            if proc.poll() is not None:
                break
    return []


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_tree(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to proc's process group and all its descendants, SIGKILL to those still running after grace_s;
    returns once proc has been reaped and every descendant has ended."""
    tree = _tree(proc)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the group has ended already
            pass
        for process in tree:
            try:
                process.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + wait_s
        while (proc.poll() is None or any(map(_running, tree))) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None and not any(map(_running, tree)):
            return
    alive = [p.pid for p in tree if _running(p)] + ([proc.pid] if proc.poll() is None else [])
    raise RuntimeError(f"processes {alive} of {proc.args!r} still running after SIGKILL")


def run(cmd, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True, timeout=timeout), the command in a session of its
    own: on its timeout, or on anything raised while waiting (pytest-timeout's, a KeyboardInterrupt), the
    whole tree is stopped before the exception goes on."""
    with popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:
            kill_tree(proc)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
