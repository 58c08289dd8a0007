"""A real one-node SLURM cluster on localhost (Debian slurm-wlm + munge), for tests.

`local_slurm_cluster(workdir)` installs what is missing (apt-get, as root), starts a private
munged (own key and socket, so no system munge is touched or needed), writes a slurm.conf into
`workdir`, starts slurmctld and slurmd in the foreground as child processes on free ports, waits
until the node is idle and yields a `SlurmCluster`. On exit it stops exactly the daemons it started.
Several such clusters can run side by side on one machine.

The node declares GPUS emulated GPUs of type GPU_TYPE (gres.conf with AutoDetect=off; each GPU's
device file is a stand-in in `workdir`, see `make_gpu_devices`), so `--gpus=N`, `--gpus=emu:N` and
`--gres=gpu:emu:N` are allocated like on a GPU cluster and slurmd sets CUDA_VISIBLE_DEVICES in the job.
There is no real GPU behind them: CUDA stays unavailable inside the jobs.
"""

import fcntl
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import process_tree

PARTITION = "debug"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
REQUIRED = ("slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol", "munged", "munge")
MEMORY_HEADROOM_MB = 1024
STARTUP_TIMEOUT_S = 60
BIND_TRIES = 3  # slurmctld and slurmd bind the ports slurm.conf names: another process may take one first
GPUS = 4  # emulated GPUs on the node
GPU_TYPE = "emu"  # their gres Type: what a rule's `gpu_model` (--gpus=emu:N) or `gres` (gpu:emu:N) names
STAND_IN_TARGET = Path("/dev/null")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here (callers turn this into a skip)."""


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster.

    conf: its slurm.conf; env: the full environment to run SLURM clients and snakemake with
    (os.environ plus SLURM_CONF, SBATCH_PARTITION and PATH, less any SLURM_* job variables and
    CUDA_VISIBLE_DEVICES inherited from an enclosing allocation); partition: its only partition;
    gpus, gpu_type: the node's emulated GPUs.
    """

    conf: Path
    env: dict[str, str]
    partition: str
    gpus: int = GPUS
    gpu_type: str = GPU_TYPE


def which(name: str) -> str | None:
    """Path of an executable, also searching the sbin directories."""
    return shutil.which(name, path=SBIN_PATH)


def node_memory_mb(meminfo: str, headroom_mb: int = MEMORY_HEADROOM_MB) -> int:
    """RealMemory for slurm.conf: MemTotal from /proc/meminfo text, in MB, minus headroom."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            total_mb = int(line.split()[1]) // 1024
            return max(total_mb - headroom_mb, total_mb // 2)
    raise ValueError("no MemTotal line in /proc/meminfo")


def make_gpu_devices(dev_dir: Path, count: int) -> list[Path]:
    """Stand-in device files nvidia0..nvidia<count-1> for the emulated GPUs: symlinks to /dev/null.

    slurmd only accepts a gres.conf `File` that is a character or block device: with regular files it
    logs "... is not a valid character or block device, fix your gres.conf", still allocates the GPUs,
    but sets no CUDA_VISIBLE_DEVICES in the jobs. It follows symlinks, so links to /dev/null pass (as
    do character devices made with mknod, which needs CAP_MKNOD; links need no privilege). Each GPU's
    index in CUDA_VISIBLE_DEVICES is the number at the end of its file name. The files live in the
    cluster's own workdir, so clusters side by side never share them.
    """
    dev_dir.mkdir(parents=True, exist_ok=True)
    devices = [dev_dir / f"nvidia{index}" for index in range(count)]
    for device in devices:
        if not device.is_symlink():
            device.symlink_to(STAND_IN_TARGET)
    return devices


def render_gres_conf(dev_dir: Path, count: int, gpu_type: str = GPU_TYPE) -> str:
    """gres.conf text: `count` GPUs of type `gpu_type` on the stand-in files of `make_gpu_devices`,
    with hardware detection (NVML/RSMI) off so that nothing looks for real GPUs."""
    return f"AutoDetect=off\nName=gpu Type={gpu_type} File={dev_dir}/nvidia[0-{count - 1}]\n"


def render_slurm_conf(workdir: Path, node: str, cpus: int, memory_mb: int, ports: tuple[int, int],
                      munge_socket: Path, gpus: int = GPUS, gpu_type: str = GPU_TYPE) -> str:
    """slurm.conf text for one node and one default partition, all state under `workdir`.

    MinJobAge keeps finished jobs visible to squeue/scontrol for a day (there is no accounting).
    The node has `gpus` GPUs of type `gpu_type` (gres.conf, next to slurm.conf, names their files).
    Without slurmdbd, gres/gpu cannot be an AccountingStorageTRES (slurmctld refuses to start), so a
    job's TRES never lists it: `scontrol --details show job` shows the allocation as JOB_GRES.
    """
    ctld_port, slurmd_port = ports
    return f"""\
ClusterName=kinjecttest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool
SlurmctldPidFile={workdir}/run/slurmctld.pid
SlurmdPidFile={workdir}/run/slurmd.pid
SlurmctldLogFile={workdir}/log/slurmctld.log
SlurmdLogFile={workdir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=86400
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{gpu_type}:{gpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def srun_wrapper(conf: Path, srun: str) -> str:
    """An `srun` that finds `conf`: snakemake's slurm-jobstep executor strips SLURM_CONF before the
    srun it runs inside each job, and this cluster's config is not at the default path."""
    return f"#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))} exec {shlex.quote(srun)} \"$@\"\n"


def client_environment(environ) -> dict[str, str]:
    """`environ` without what an enclosing SLURM job (or GPU machine) sets: its SLURM_* job variables
    would point sbatch/srun at the wrong allocation, and an inherited CUDA_VISIBLE_DEVICES would show
    up in local rules as if this cluster had given them GPUs."""
    return {name: value for name, value in environ.items()
            if not name.startswith(("SLURM_", "SBATCH_", "SRUN_")) and name != "CUDA_VISIBLE_DEVICES"}


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_checked(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, raising SlurmUnavailable with its error output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SlurmUnavailable(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


INSTALL_LOCK = Path(tempfile.gettempdir()) / "kinject-slurm-install.lock"


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get unless their programs are all on the path; one install at a time on
    the machine (INSTALL_LOCK): two pytest-xdist workers that each start a cluster would otherwise race for dpkg's
    lock, and the second would fail."""
    def missing() -> list[str]:
        return [name for name in REQUIRED if not which(name)]

    if not missing():
        return
    if not which("apt-get"):
        raise SlurmUnavailable("slurm-wlm/munge are not installed and there is no apt-get to install them")
    with open(INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if missing():  # not installed by the other worker meanwhile
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            run_checked(["apt-get", "update"], env=env)
            run_checked(["apt-get", "install", "-y", "--no-install-recommends", "slurm-wlm", "munge"], env=env)
    if still := missing():
        raise SlurmUnavailable(f"still missing after installing slurm-wlm and munge: {still}")


def start_daemon(stack: ExitStack, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a daemon in the foreground, in a session of its own, with stdout/stderr in `log`; stop it and
    whatever it started (slurmd's slurmstepd) when `stack` closes: SIGTERM, SIGKILL after 10 s."""
    with open(log, "w") as out:
        proc = process_tree.popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    stack.callback(process_tree.kill_tree, proc)
    return proc


def daemon_logs(log_dir: Path) -> str:
    """The tails of all daemon logs, for error messages."""
    return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                     for path in sorted(log_dir.glob("*.log")))


def start_munged(stack: ExitStack, log_dir: Path) -> Path:
    """Start a private munged with a fresh key; return its socket. It is stopped when `stack` closes.

    Its files live in their own world-traversable temporary directory: munged refuses a socket
    whose directory (or any parent) is not executable by all.
    """
    run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kinject-munge-")))
    run_dir.chmod(0o755)
    key = run_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = run_dir / "munge.socket"
    proc = start_daemon(stack, [which("munged"), "--foreground", f"--key-file={key}", f"--socket={sock}",
                                f"--pid-file={run_dir / 'munged.pid'}", f"--seed-file={run_dir / 'munged.seed'}"],
                        dict(os.environ), log_dir / "munged.log")
    deadline = time.monotonic() + 15
    while subprocess.run([which("munge"), "-n", "-S", str(sock)], capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"munged did not start\n{daemon_logs(log_dir)}")
        time.sleep(0.2)
    return sock


def wait_until_idle(node: str, env: dict[str, str], procs: list[subprocess.Popen], log_dir: Path) -> None:
    """Block until sinfo reports `node` idle; fail with the daemon logs on timeout or daemon exit."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError(f"a SLURM daemon exited during start-up\n{daemon_logs(log_dir)}")
        result = subprocess.run(["sinfo", "--noheader", "--nodes", node, "--format", "%T"],
                                env=env, capture_output=True, text=True)
        state = result.stdout.strip() or result.stderr.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise RuntimeError(f"SLURM node {node} not idle after {STARTUP_TIMEOUT_S} s (last sinfo: {state!r})\n"
                       f"{daemon_logs(log_dir)}")


@contextmanager
def local_slurm_cluster(workdir: Path) -> Iterator[SlurmCluster]:
    """Run a one-node SLURM cluster with its config, state and logs in `workdir`; stop its daemons on exit.

    Raises SlurmUnavailable when not root or SLURM cannot be installed; RuntimeError (with the
    daemon logs) when the daemons do not come up.
    """
    if os.geteuid() != 0:
        raise SlurmUnavailable("the test cluster runs munged, slurmctld and slurmd as root; not running as root")
    ensure_installed()
    workdir = Path(workdir).resolve()
    for sub in ("state", "spool", "run", "log", "bin"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    log_dir, conf, node = workdir / "log", workdir / "slurm.conf", socket.gethostname().split(".")[0]
    wrapper = workdir / "bin" / "srun"
    wrapper.write_text(srun_wrapper(conf, which("srun")))
    wrapper.chmod(0o755)
    make_gpu_devices(workdir / "dev", GPUS)
    (workdir / "gres.conf").write_text(render_gres_conf(workdir / "dev", GPUS))  # found next to slurm.conf
    env = {**client_environment(os.environ), "SLURM_CONF": str(conf), "SBATCH_PARTITION": PARTITION,
           "PATH": os.pathsep.join([str(workdir / "bin"), os.environ.get("PATH", "")])}
    with ExitStack() as stack:
        munge_socket = start_munged(stack, log_dir)
        for attempt in range(BIND_TRIES):
            conf.write_text(render_slurm_conf(workdir, node, os.cpu_count() or 1,
                                              node_memory_mb(Path("/proc/meminfo").read_text()),
                                              (free_port(), free_port()), munge_socket))
            daemons = stack.enter_context(ExitStack())
            procs = [start_daemon(daemons, [which("slurmctld"), "-D", "-i", "-f", str(conf)], env,
                                  log_dir / "slurmctld.stdout.log"),
                     start_daemon(daemons, [which("slurmd"), "-D", "-N", node, "-f", str(conf)], env,
                                  log_dir / "slurmd.stdout.log")]
            try:
                wait_until_idle(node, env, procs, log_dir)
                break
            except RuntimeError as error:  # a port taken between free_port and the bind: new ports, once more
                daemons.close()
                if attempt + 1 == BIND_TRIES or "address already in use" not in str(error).lower():
                    raise
                for log in log_dir.glob("slurm*.log"):  # so the next try is judged by its own logs
                    log.unlink()
        yield SlurmCluster(conf=conf, env=env, partition=PARTITION)


def snakemake_flags() -> list[str]:
    """Extra `snakemake --profile slurm` flags the test cluster needs (its partition comes via `SlurmCluster.env`).

    - status via squeue: without slurmdbd, the plugin's default sacct polling never sees a job finish;
      squeue works because MinJobAge keeps finished jobs listed.
    - first status check after 2 s instead of 40 s, so small test workflows finish in seconds.
    - keep the per-job SLURM logs (named <jobid>.log), the proof that jobs ran through SLURM.
    - no account: the cluster has no accounting (plugin 2.8 accepts but ignores this flag; it then
      tries to guess an account with sacct, fails quietly and submits without -A).
    """
    return ["--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "2",
            "--slurm-keep-successful-logs",
            "--slurm-no-account"]


def scontrol_job(job_id: str, env: dict[str, str]) -> dict[str, str]:
    """`scontrol --details show job` as a field -> value dict (the details add JOB_GRES, the GRES
    allocated to the job: `gpu:emu:1`, or `(null)` for none)."""
    out = subprocess.run(["scontrol", "--details", "--oneliner", "show", "job", job_id], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)
