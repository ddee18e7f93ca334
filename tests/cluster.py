"""What the cluster tests (pytest -m cluster) share: the local SLURM cluster of .ci/slurm.sh, and
jobs of several JAX processes on this machine's CPU, joined over loopback.

Each process of a multi-process job gets `devices` CPU devices of its own (XLA_FLAGS), the tests'
cheap XLA code generation and their compilation cache (tests/conftest.py), and this checkout on
its PYTHONPATH, so scripts started here import the code under test.
"""
import os
import shutil
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLURM_DIR = os.environ.get("LMPHYS_SLURM_DIR", "/tmp/lmphys-slurm")
TINY = os.path.join(REPO, "tests", "tiny_run.py")


def process_env(devices: int = 1, **extra: str) -> dict[str, str]:
    """The environment of one process of a test's multi-process job."""
    env = dict(os.environ)
    flags = [flag for flag in env.get("XLA_FLAGS", "").split() if not flag.startswith("--xla_force_host_platform")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def script(name: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, "scripts", name)]


def run_processes(command: list[str], count: int, log_dir: str, devices: int = 1, timeout: float = 300,
                  parallel_field: str = "config.parallel") -> list[str]:
    """Start `count` processes of `command` by hand as one JAX job (coordinator on a free loopback
    port, process ids 0..count-1, set in the `parallel_field` section of its config), wait for all,
    and return their outputs; raise if one failed."""
    address = f"127.0.0.1:{free_port()}"
    processes, logs = [], []
    for index in range(count):
        logs.append(os.path.join(log_dir, f"process{index}.log"))
        flags = [f"--{parallel_field}.coordinator_address={address}", f"--{parallel_field}.num_processes={count}",
                 f"--{parallel_field}.process_id={index}"]
        with open(logs[-1], "w") as log:
            processes.append(subprocess.Popen(command + flags, cwd=REPO, env=process_env(devices), stdout=log,
                                              stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    outputs = [open(path).read() for path in logs]
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"process {index} ended with {process.returncode}:\n{output[-4000:]}"
    return outputs


def slurm_ready() -> str | None:
    """None when a SLURM cluster answers (starting the local one of .ci/slurm.sh if need be), else
    why not, in one line."""
    if shutil.which("sbatch") is None:
        return "SLURM is not installed here (bash .ci/slurm.sh install, as root)"
    conf = os.path.join(SLURM_DIR, "slurm.conf")
    if "SLURM_CONF" not in os.environ and os.path.exists(conf):
        os.environ["SLURM_CONF"] = conf
    if _answers():
        return None
    started = subprocess.run(["bash", os.path.join(REPO, ".ci", "slurm.sh"), "start"], capture_output=True, text=True)
    os.environ.setdefault("SLURM_CONF", conf)
    if started.returncode != 0 or not _answers():
        reason = (started.stderr.strip() or started.stdout.strip() or "no answer").splitlines()[-1]
        return f"the local SLURM cluster could not be started (bash .ci/slurm.sh start: {reason})"
    return None


def _answers() -> bool:
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and "UP" in ping.stdout


def job_states(job_id: str) -> dict[str, str]:
    """{array task id: state} of a SLURM array job, from scontrol (no accounting database here)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    states = {}
    for line in shown.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if "ArrayTaskId" in fields:
            states[fields["ArrayTaskId"]] = fields["JobState"]
    return states


def wait_for_job(job_id: str, timeout: float = 300) -> dict[str, str]:
    """Wait until no task of the array job is pending or running; its final task states."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = job_states(job_id)
        if states and not any(state in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED")
                              for state in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"SLURM job {job_id} did not end within {timeout:.0f}s: {job_states(job_id)}")
