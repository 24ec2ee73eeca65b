"""A stand-in for SLURM's commands, enough for submitit's SLURM executor and Lightning's requeue:
``python fake_slurm.py COMMAND ARGS`` acts as ``sbatch``, ``srun``, ``sacct`` or ``scontrol``
(:func:`install` puts one-line scripts of those names in a folder for PATH). State lives in
``$FAKE_SLURM_DIR``.

* ``sbatch SCRIPT``: prints ``Submitted batch job N`` and runs the script's array tasks in the
  background, one after the other, with the environment SLURM gives a batch job
  (``SLURM_JOB_ID``, ``SLURM_ARRAY_JOB_ID``, ``SLURM_ARRAY_TASK_ID``, ``SLURM_NTASKS``,
  ``SLURM_PROCID``, ``SLURM_RESTART_COUNT`` ...); a task whose job was requeued while it ran runs
  again, as SLURM restarts a requeued job: same ids, ``SLURM_RESTART_COUNT`` one higher. The
  runners' process ids are in ``runners.pid``.
* ``srun [--output F] [--error F] ... CMD``: runs CMD with its output in those files (``%A``,
  ``%a``, ``%j``, ``%t`` expanded).
* ``scontrol requeue ID``: records the request and, as SLURM does to a requeued job, sends SIGTERM
  to the job's process (the caller's parent: Lightning calls it from the training process).
* ``sacct ... -j IDS``: the state of those jobs (PENDING, RUNNING, REQUEUED, COMPLETED, FAILED).

Only one task per job (``--ntasks-per-node=1``, one node): enough for a requeue of a one-process member.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SLURM_DIR", "."))
FIRST_JOB_ID = 7000


def _log(name: str, line: str) -> None:
    with open(STATE / name, "a") as handle:
        handle.write(line + "\n")


def _set_state(job: str, state: str) -> None:
    (STATE / f"state-{job}").write_text(state)


def sbatch(args: list[str]) -> int:
    """Queue the script's jobs and start a runner for them in the background, as SLURM does:
    submitit moves the job's files into place only after sbatch has answered."""
    script = STATE / f"script-{len(list(STATE.glob('script-*')))}.sh"
    script.write_text(Path(args[-1]).read_text())
    array_id = FIRST_JOB_ID + 100 * (len(list(STATE.glob("script-*"))) - 1)
    match = re.search(r"^#SBATCH --array=(\d+)-(\d+)", script.read_text(), re.M)
    tasks = list(range(int(match.group(1)), int(match.group(2)) + 1)) if match else [None]
    for task in tasks:
        _set_state(f"{array_id}_{task}" if task is not None else str(array_id), "PENDING")
    with open(STATE / "runner.log", "a") as output:  # not sbatch's stdout: submitit reads that to its end
        runner = subprocess.Popen(
            [sys.executable, __file__, "run", str(script), str(array_id), ",".join(map(str, tasks))],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _log("runners.pid", str(runner.pid))
    print(f"Submitted batch job {array_id}")
    return 0


def run(args: list[str]) -> int:
    """The background runner: each task of the array in turn, again after a requeue."""
    script_path, array_id = args[0], int(args[1])
    script = Path(script_path).read_text()
    tasks = [None if t == "None" else int(t) for t in args[2].split(",")]
    name = re.search(r"^#SBATCH --job-name=(\S+)", script, re.M)
    folder = re.search(r"_submit (\S+)$", script, re.M).group(1)
    for task in tasks:
        job = f"{array_id}_{task}" if task is not None else str(array_id)
        pickle = Path(folder.replace("%j", job)) / f"{job}_submitted.pkl"
        for _ in range(600):
            if pickle.exists():
                break
            time.sleep(0.1)
        restarts = 0
        while True:
            env = {
                **os.environ,
                # An array task has a job id of its own besides the array's.
                "SLURM_JOB_ID": str(array_id if task is None else array_id + 1 + task),
                "SLURM_JOB_NAME": name.group(1) if name else "job",
                "SLURM_NTASKS": "1",
                "SLURM_NTASKS_PER_NODE": "1",
                "SLURM_NNODES": "1",
                "SLURM_NODEID": "0",
                "SLURM_PROCID": "0",
                "SLURM_LOCALID": "0",
                "SLURM_JOB_NODELIST": "localhost",
                "SLURM_NODELIST": "localhost",
                "SLURM_RESTART_COUNT": str(restarts),
            }
            if task is not None:
                env.update(SLURM_ARRAY_JOB_ID=str(array_id), SLURM_ARRAY_TASK_ID=str(task))
            _set_state(job, "RUNNING")
            code = subprocess.call(["bash", script_path], env=env)
            _log("runs.log", f"{job} restart={restarts} exit={code}")
            marker = STATE / f"requeue-{job}"
            if not marker.exists():
                break
            marker.unlink()
            _set_state(job, "REQUEUED")
            restarts += 1
        _set_state(job, "COMPLETED" if code == 0 else "FAILED")
    return 0


def _expand(pattern: str) -> str:
    env = os.environ
    return (
        pattern.replace("%A", env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"]))
        .replace("%a", env.get("SLURM_ARRAY_TASK_ID", "0"))
        .replace("%j", env["SLURM_JOB_ID"])
        .replace("%t", env.get("SLURM_PROCID", "0"))
    )


def srun(args: list[str]) -> int:
    files = {"--output": None, "--error": None}
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in files:
            files[option] = _expand(args.pop(0))
    out = open(files["--output"], "a") if files["--output"] else None  # noqa: SIM115
    err = open(files["--error"], "a") if files["--error"] else None  # noqa: SIM115
    return subprocess.call(args, stdout=out, stderr=err)


def scontrol(args: list[str]) -> int:
    if args[:1] == ["requeue"]:
        _log("scontrol.log", " ".join(args))
        (STATE / f"requeue-{args[1]}").touch()
        os.kill(os.getppid(), signal.SIGTERM)
    return 0


def sacct(args: list[str]) -> int:
    wanted = args[args.index("-j") + 1].split(",") if "-j" in args else []
    print("JobID|State|NodeList")
    for path in sorted(STATE.glob("state-*")):
        job = path.name[len("state-") :]
        if not wanted or job.split("_")[0] in wanted or job in wanted:
            print(f"{job}|{path.read_text()}|localhost")
    return 0


COMMANDS = {"sbatch": sbatch, "srun": srun, "scontrol": scontrol, "sacct": sacct, "run": run}


def install(bin_dir: Path) -> None:
    """Write ``sbatch``, ``srun``, ``sacct`` and ``scontrol`` into ``bin_dir``, each running this
    file with this Python (``exec``: ``scontrol``'s parent stays the process that called it)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("sbatch", "srun", "scontrol", "sacct"):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {name} "$@"\n')
        path.chmod(0o755)


if __name__ == "__main__":
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
