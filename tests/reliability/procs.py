"""Subprocesses of the battery, started together at the beginning of the session so their
start-up (importing torch and MONAI) overlaps the in-process tests.

- two ``python -m xraystyle train`` runs, signalled (SIGKILL, SIGTERM) by a watcher thread as
  soon as their first checkpoint is indexed;
- one checkpoint writer that stalls half-way through two writes and is SIGKILLed there;
- one process with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` that tries every way the toolkit loads
  a checkpoint on pickle payloads and reports what happened as JSON.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import REPO, subprocess_env, train_args

TIMEOUT = 300  # generous: the CI machine is shared and the subprocesses import torch + MONAI

# argv: pairs of (run folder, temp-file name to stall in). Snapshot 1 of every run is written
# normally; then snapshot 2 of every run is written on its own thread, each stalling half-way
# through its target file, and the process waits to be killed.
STALL_SCRIPT = r"""
import os, sys, threading, time
from pathlib import Path
import torch
from xraystyle.training import checkpoint as ck
from xraystyle import atomic

pairs = [(Path(sys.argv[i]), sys.argv[i + 1]) for i in range(1, len(sys.argv), 2)]
payload = lambda step: {"state": {"w": torch.full((128, 128), float(step))}, "step": step, "config": {}}
for run, _ in pairs:
    ck.save_checkpoint(run, 1, payload(1))
stall_at = {str(run / "checkpoints" / name): run for run, name in pairs}
real_open = open

class Stall:  # writes half of the data, makes it durable, then hangs until killed
    def __init__(self, fh, run):
        self.fh, self.run = fh, run
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)
    def __getattr__(self, name):
        return getattr(self.fh, name)
    def write(self, data):
        self.fh.write(data[: len(data) // 2]); self.fh.flush(); os.fsync(self.fh.fileno())
        (self.run / "STALLED").touch()
        time.sleep(600)

def stalling_open(path, mode="r", *args, **kwargs):
    fh = real_open(path, mode, *args, **kwargs)
    run = stall_at.get(str(path))
    return Stall(fh, run) if run is not None else fh

# save_checkpoint writes through xraystyle.atomic.atomic_write: patch the open it calls
atomic.open = stalling_open
for run, _ in pairs:
    threading.Thread(target=ck.save_checkpoint, args=(run, 2, payload(2)), daemon=True).start()
time.sleep(600)
"""

# argv: evil checkpoint file, evil run folder, cohort manifest, config, synth source image, out folder
UNSAFE_ENV_SCRIPT = r"""
import json, logging, sys
from typer.testing import CliRunner
from xraystyle.cli import app
from xraystyle.errors import CheckpointError
from xraystyle.trained import load_trained_model

evil_file, evil_run, cohort, config, source, out = sys.argv[1:7]
results = {}
for name, target in (("file", evil_file), ("run", evil_run)):
    try:
        load_trained_model(target)
        results[name] = "LOADED"
    except CheckpointError as exc:
        results[name] = str(exc)
runner = CliRunner()
commands = {
    "train": ["train", "--config", config, "--cohort", cohort, "--out", evil_run, "--resume", "--iters", "8",
              "--no-progress"],
    "synth": ["synth", "--checkpoint", evil_file, "--source", source, "--out", out, "--target", "effusion",
              "--no-progress"],
    "report": ["report", "--checkpoint", evil_run, "--input", source, "--out", out + "-report"],
}
for name, args in commands.items():
    # Each real command runs in its own process; here the root callback's logging.basicConfig
    # would keep a handler on the previous invocation's (closed) captured stderr.
    logging.getLogger().handlers.clear()
    r = runner.invoke(app, args)
    results[name] = [r.exit_code, r.output]
print("RESULTS " + json.dumps(results))
"""


@dataclass
class Watched:
    proc: subprocess.Popen
    log: Path | None
    signal_sent: int | None = None
    ready: Callable[[], bool] | None = None  # condition that triggers the signal
    sig: int | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def watch(self) -> None:
        def run():
            deadline = time.monotonic() + TIMEOUT
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self.ready():
                    self.proc.send_signal(self.sig)
                    self.signal_sent = self.sig
                    return
                time.sleep(0.01)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> tuple[int, str]:
        """Wait for the process; (exit code, its output)."""
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"subprocess still running after {TIMEOUT} s") from None
        if self.thread is not None:
            self.thread.join(timeout=5)
        return code, (self.log.read_text(errors="replace") if self.log else "")


def _popen(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env)


class Background:
    """Starts the subprocesses a session needs; each result is collected on first use."""

    def __init__(self, base: Path):
        self.base = base
        self.watched: dict[str, Watched] = {}

    def start_signal_runs(self, config: Path, cohort_path: Path) -> None:
        for sig in (signal.SIGKILL, signal.SIGTERM):
            run = self.base / f"signal-{sig.name}"
            log = self.base / f"signal-{sig.name}.log"
            cmd = [sys.executable, "-m", "xraystyle", *train_args(config, cohort_path, run)]
            w = Watched(_popen(cmd, subprocess_env(self.base / f"cache-{sig.name}"), log), log,
                        ready=lambda run=run: (run / "checkpoints" / "index.json").exists(), sig=sig)
            w.watch()
            self.watched[sig.name] = w

    def start_crashed_writes(self) -> None:
        """One process, two runs: "crash-snapshot" stalls inside the snapshot file, "crash-index"
        after the snapshot's rename, inside the new index. Killed once both have stalled."""
        runs = {phase: self.base / f"crash-{phase}" for phase in ("snapshot", "index")}
        for run in runs.values():
            run.mkdir()
        log = self.base / "crash.log"
        cmd = [sys.executable, "-c", STALL_SCRIPT, str(runs["snapshot"]), ".step_0000002.pt.tmp",
               str(runs["index"]), ".index.json.tmp"]
        w = Watched(_popen(cmd, subprocess_env(self.base / "cache-crash"), log), log,
                    ready=lambda: all((run / "STALLED").exists() for run in runs.values()), sig=signal.SIGKILL)
        w.watch()
        self.watched["crash"] = w

    def start_unsafe_env(self, args: list[str]) -> None:
        log = self.base / "unsafe-env.log"
        cmd = [sys.executable, "-c", UNSAFE_ENV_SCRIPT, *map(str, args)]
        env = subprocess_env(self.base / "cache-unsafe", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        self.watched["unsafe-env"] = Watched(_popen(cmd, env, log), log)

    def result(self, name: str) -> tuple[int, str, int | None]:
        """(exit code, output, signal the watcher sent or None)."""
        w = self.watched[name]
        code, out = w.finish()
        return code, out, w.signal_sent

    def unsafe_env_results(self) -> dict:
        code, out, _ = self.result("unsafe-env")
        line = next((x for x in out.splitlines() if x.startswith("RESULTS ")), None)
        assert code == 0 and line is not None, out
        return json.loads(line[len("RESULTS "):])

    def stop(self) -> None:
        for w in self.watched.values():
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
