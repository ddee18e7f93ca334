"""Faults injected into a run's workdir, and what survives them: a damaged latest checkpoint, a
metrics line cut short, a resume that is refused, two processes on one workdir, preemption, and
writes the disk refuses (no space, a size limit, no permission, a read-only file system, a file
where a directory belongs, a disk that hangs). Each test injects the fault itself."""
import builtins
import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lmphys.errors import EXIT_STOPPED, EXIT_STORAGE, ConfigError, DataError, StorageError, describe
from lmphys.train import checkpoint, loop, metrics, runs, workdir
from tests.conftest import REPO, tiny_config

QUIET = lambda line: None  # noqa: E731


def _leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(state))]


def _assert_same_state(a, b):
    for left, right in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(left, right)


def _config(path, steps=8):
    config = tiny_config(str(path), steps=steps)
    config.train.checkpoint_every = 2
    config.train.keep_checkpoints = 4
    return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run: what every recovered run must end as, bit for bit."""
    return loop.run(_config(tmp_path_factory.mktemp("reference") / "run"), log=QUIET)


def _damage_truncated(step_dir):
    data = max(glob.glob(os.path.join(step_dir, "default", "ocdbt.process_0", "d", "*")), key=os.path.getsize)
    with open(data, "r+b") as handle:
        handle.truncate(1000)


def _damage_missing(step_dir):
    os.remove(os.path.join(step_dir, "default", "_METADATA"))


def test_a_damaged_latest_checkpoint_is_skipped_for_the_newest_that_restores(tmp_path, reference):
    run_dir = tmp_path / "run"
    loop.run(_config(run_dir), stop_at_step=6, log=QUIET)
    checkpoints = run_dir / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["2", "4", "6"]
    _damage_truncated(str(checkpoints / "6"))  # a data file cut short
    _damage_missing(str(checkpoints / "4"))  # a file inside it gone

    # A reader (probe.py, generate.py) skips them without moving anything.
    notes = []
    assert runs.load_trained(str(run_dir), log=notes.append).step == 2
    assert len(notes) == 2 and all("is corrupt" in note for note in notes) and "checkpoint 6" in notes[0]
    assert sorted(os.listdir(checkpoints)) == ["2", "4", "6"]

    lines = []
    resumed = loop.run(_config(run_dir), log=lines.append)
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 2 and all("is corrupt" in line and "mismatch" not in line for line in skipped)
    assert "checkpoint 6" in skipped[0] and "checkpoint 4" in skipped[1]
    assert any(line.startswith("resumed from step 2") for line in lines)
    assert {"4", "6"} <= set(os.listdir(run_dir / checkpoint.CORRUPT_DIR))  # moved aside, not deleted
    _assert_same_state(resumed.state, reference.state)
    steps = [record["step"] for record in metrics.read_metrics(str(run_dir)) if record["split"] == "train"]
    assert steps == list(range(1, 9))


def test_a_checkpoint_of_another_shape_is_a_mismatch_and_the_run_keeps_its_config(tmp_path):
    run_dir = tmp_path / "run"
    loop.run(_config(run_dir, steps=2), log=QUIET)
    saved = (run_dir / "config.json").read_text()
    wider = _config(run_dir, steps=4)
    wider.model.width = 64
    with pytest.raises(checkpoint.CheckpointError) as error:
        loop.run(wider, log=QUIET)
    message = str(error.value)
    assert "mismatch" in message and "corrupt" not in message and "(32,) float32 there" in message and "(64,) float32 here" in message
    assert (run_dir / "config.json").read_text() == saved, "a refused resume replaced config.json"
    assert os.listdir(run_dir / "checkpoints") == ["2"] and not (run_dir / checkpoint.CORRUPT_DIR).exists()
    assert runs.load_trained(str(run_dir), log=QUIET).config.model.width == 32


def test_a_metrics_line_cut_short_is_skipped_by_readers_and_trimmed_on_resume(tmp_path, reference):
    run_dir = tmp_path / "run"
    loop.run(_config(run_dir), stop_at_step=4, log=QUIET)
    path = run_dir / "metrics.jsonl"
    whole = metrics.read_metrics(str(run_dir))
    with open(path, "a") as handle:
        handle.write('{"step": 5, "split": "tr')  # the process died mid-write
    assert metrics.read_metrics(str(run_dir)) == whole
    resumed = loop.run(_config(run_dir), log=QUIET)
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines) and path.read_text().endswith("\n")
    assert [json.loads(line)["step"] for line in lines if '"train"' in line] == list(range(1, 9))
    _assert_same_state(resumed.state, reference.state)
    # A damaged line in the middle is no crash artefact: readers name it.
    lines[2] = lines[2][:10]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 3 is not JSON"):
        metrics.read_metrics(str(run_dir))


def test_a_metrics_write_the_disk_takes_only_half_of_leaves_whole_lines(tmp_path, monkeypatch):
    writer = metrics.MetricsWriter(str(tmp_path))
    writer.write(1, "train", {"loss": 1.0})
    real_write = os.write

    def half_then_full(fd, data):  # what a disk that fills mid-record does
        if len(data) > 8:
            real_write(fd, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StorageError, match="no space left on device; free some space"):
        writer.write(2, "train", {"loss": 0.5})
    monkeypatch.setattr(os, "write", real_write)
    writer.close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "split": "train", "loss": 1.0}\n'


def test_config_json_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"old": true}')
    os.symlink("/dev/full", str(path) + ".tmp")  # the disk is full when the new copy is written
    with pytest.raises(StorageError, match="no space left on device"):
        workdir.write_atomic(str(path), '{"new": true}')
    assert path.read_text() == '{"old": true}' and not os.path.lexists(str(path) + ".tmp")
    workdir.write_atomic(str(path), '{"new": true}')
    assert path.read_text() == '{"new": true}'


def _reader_of(process):
    """The lines a process prints, one at a time."""
    for line in process.stdout:
        yield line


def test_a_second_process_on_a_workdir_stops_at_once_and_sigterm_exits_75(tmp_path, reference):
    """Preemption: a training process holds the workdir (a second one is refused in one sentence,
    naming the holder), then SIGTERM makes it checkpoint and exit with 75, not 0; the rerun ends
    bit-equal to an uninterrupted run."""
    run_dir = tmp_path / "run"
    config_file = tmp_path / "tiny.py"
    config_file.write_text("from tests.conftest import tiny_config\n\n\ndef get_config():\n"
                           "    config = tiny_config('unused', steps=8)\n"
                           "    config.train.checkpoint_every, config.train.keep_checkpoints = 2, 4\n"
                           "    return config\n")
    command = [sys.executable, os.path.join(REPO, "scripts", "train.py"), f"--config={config_file}",
               f"--config.workdir={run_dir}"]
    holder = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in _reader_of(holder):
            if line.startswith("step 2/8"):
                holder.send_signal(signal.SIGSTOP)  # keep it holding the workdir mid-run
                break
        second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        holder.send_signal(signal.SIGTERM)  # delivered the moment it runs again
        holder.send_signal(signal.SIGCONT)
        rest = holder.communicate(timeout=300)[0]
    finally:
        holder.kill()
    assert second.returncode == 2, second.stderr[-2000:]
    refusal = second.stderr.strip().splitlines()[-1]
    assert refusal.startswith(f"error: {run_dir} is in use by another run (pid {holder.pid} on {os.uname().nodename} since ")
    assert refusal.endswith("): wait for it to end or give this one another workdir")
    assert "compiled" not in second.stdout and "Traceback" not in second.stderr
    assert holder.returncode == EXIT_STOPPED, rest[-2000:]
    assert "SIGTERM received" in rest and "rerun the same command to resume (exit status 75)" in rest
    stopped_at = checkpoint.finished_steps(str(run_dir))[-1]
    assert stopped_at < 8 and (run_dir / "lock").read_text() == ""

    lines = []
    resumed = loop.run(_config(run_dir), log=lines.append)
    assert f"resumed from step {stopped_at}" in "\n".join(lines) and resumed.steps == 8
    _assert_same_state(resumed.state, reference.state)
    steps = [record["step"] for record in metrics.read_metrics(str(run_dir)) if record["split"] == "train"]
    assert steps == list(range(1, 9)), "metrics were written twice"


def test_two_runs_in_one_process_on_one_workdir_exclude_each_other(tmp_path):
    with workdir.WorkdirLock(str(tmp_path)):
        with pytest.raises(workdir.WorkdirBusy, match=f"{tmp_path} is in use by another run \\(pid {os.getpid()}"):
            loop.run(_config(tmp_path, steps=2), log=QUIET)
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "config.json").exists()
    loop.run(_config(tmp_path, steps=2), log=QUIET)  # released: the run goes ahead


_FULL_DISK_AT_STEP_4 = """
import resource, runpy, signal, sys
from lmphys.train import checkpoint

real_save = checkpoint.Checkpointer.save

def save(self, step, state):
    if step == 4:  # from here on no file may grow past 16 KiB: the checkpoint's data files do
        self.wait()  # step 2's save is on disk first
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
    real_save(self, step, state)

checkpoint.Checkpointer.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

_HUNG_DISK_AT_STEP_4 = """
import runpy, sys, time
from orbax.checkpoint._src.path import atomicity

real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

async def finalize(self):
    if self._final_path.name == "4":
        time.sleep(3600)  # orbax's (non-daemon) finalize thread never returns: a hung disk
    await real_finalize(self)

atomicity.AtomicRenameTemporaryPath.finalize = finalize
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _train_script(snippet, run_dir, *overrides, timeout=300):
    command = [sys.executable, "-c", snippet, os.path.join(REPO, "scripts", "train.py"),
               f"--config={os.path.join(REPO, 'configs', 'default.py')}", f"--config.workdir={run_dir}",
               "--config.task.batch_size=4", "--config.task.seq_len=32", "--config.task.eval_samples=8",
               "--config.task.eval_prefix_len=4", "--config.parallel.data=1", "--config.model.num_layers=2",
               "--config.model.num_heads=2", "--config.model.width=32", "--config.model.max_len=32",
               "--config.train.steps=8", "--config.train.eval_every=1000", "--config.train.checkpoint_every=2",
               *overrides]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return result, time.perf_counter() - started


@pytest.mark.parametrize("fault, snippet, reason, extra", [
    ("a size limit hit by the checkpoint's files", _FULL_DISK_AT_STEP_4,
     "the file grew past the size limit (ulimit -f)", ()),
    ("a hung disk", _HUNG_DISK_AT_STEP_4,
     "it was still unfinished after 3 s (train.save_timeout_seconds), so the disk may be hung", ("--config.train.save_timeout_seconds=3",)),
], ids=["size_limit", "hung_disk"])
def test_a_save_the_disk_refuses_ends_the_run_in_one_sentence_and_keeps_the_last_checkpoint(
        tmp_path, fault, snippet, reason, extra):
    run_dir = tmp_path / "run"
    result, seconds = _train_script(snippet, run_dir, *extra)
    assert result.returncode == EXIT_STORAGE, result.stderr[-3000:]
    # The sentence is all of stderr: no storage thread's traceback before it or spliced into it.
    assert result.stderr.strip().splitlines() == [
        f"error: could not write the checkpoint of step 4 to {run_dir}/checkpoints: {reason}; the checkpoint of "
        f"step 2 is intact: {'raise the file size limit' if 'limit' in reason else 'fix the disk'} and rerun to resume"]
    assert seconds < 120, f"{fault}: the run took {seconds:.0f} s to stop"
    assert checkpoint.finished_steps(str(run_dir)) == [2]
    kept = runs.load_trained(str(run_dir), log=QUIET)
    assert kept.step == 2 and all(np.isfinite(leaf).all() for leaf in _leaves(kept.params))


def test_files_where_directories_belong_and_a_full_metrics_file_stop_the_run_in_one_sentence(tmp_path):
    cases = {
        "checkpoints": ("file", "could not open the checkpoints in {dir}/checkpoints: a file stands where a directory belongs"),
        "tensorboard": ("file", "could not write {dir}/tensorboard: a file stands where a directory belongs"),
        "metrics.jsonl": ("dir", "could not write {dir}/metrics.jsonl: a directory stands where a file belongs"),
    }
    for name, (kind, expected) in cases.items():
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / name).mkdir() if kind == "dir" else (run_dir / name).write_text("")
        with pytest.raises(StorageError) as error:
            loop.run(_config(run_dir, steps=2), log=QUIET)
        assert str(error.value).startswith(expected.format(dir=run_dir)), str(error.value)
        assert "\n" not in str(error.value)
    # A real ENOSPC (writes to /dev/full fail with it) after step 2's checkpoint.
    run_dir = tmp_path / "full"
    loop.run(_config(run_dir, steps=2), log=QUIET)
    (run_dir / "metrics.jsonl").unlink()
    os.symlink("/dev/full", run_dir / "metrics.jsonl")
    with pytest.raises(StorageError, match="metrics.jsonl: no space left on device; free some space"):
        loop.run(_config(run_dir, steps=4), log=QUIET)
    assert checkpoint.finished_steps(str(run_dir)) == [2]


@pytest.mark.parametrize("number, words", [(errno.EACCES, "permission denied"), (errno.EROFS, "the file system is read-only")])
def test_a_workdir_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch, number, words):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chmod(run_dir, 0o500)
    probe = run_dir / "probe"
    try:
        probe.write_text("")
        privileged = True  # root ignores the mode bits: fail the workdir's writes from Python instead
        probe.unlink()
    except PermissionError:
        privileged = False
    if privileged or number != errno.EACCES:
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if str(file).startswith(str(run_dir)):
                raise OSError(number, os.strerror(number), str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(ConfigError, match=f"workdir = '{run_dir}' is invalid: it is not writable \\({words}"):
        loop.run(_config(run_dir, steps=2), log=QUIET)
    os.chmod(run_dir, 0o700)


def test_storage_errors_are_put_in_words_however_the_library_wraps_them():
    tensorstore = ValueError("RESOURCE_EXHAUSTED: Error writing local file \"x\": No space left on device "
                             "[os_error_code='28']")
    assert describe(tensorstore) == "no space left on device"
    wrapped = RuntimeError("commit failed")
    wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system")
    assert describe(wrapped) == "the file system is read-only"
    assert describe(OSError(errno.EDQUOT, "Disk quota exceeded")) == "the disk quota is exceeded"
    assert describe(ValueError("something else")) == "ValueError: something else"


_CRASH_BEFORE_THE_RENAME = """
import os, sys
from orbax.checkpoint._src.path import atomicity
from lmphys.train import loop
from tests.conftest import tiny_config

real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

async def finalize(self):
    if self._final_path.name == "6":  # step 6 is written but not yet renamed into place
        print(sorted(os.listdir(self._final_path.parent)), flush=True)
        os._exit(17)
    await real_finalize(self)

atomicity.AtomicRenameTemporaryPath.finalize = finalize
config = tiny_config(sys.argv[1], steps=8)
config.train.checkpoint_every = 3
loop.run(config, log=lambda line: None)
"""


def test_a_crash_in_the_middle_of_a_save_keeps_the_last_good_checkpoint(tmp_path):
    """The process dies while step 6 is still a temporary directory, as the listing it leaves
    proves; the rerun resumes from step 3 and ends bit-equal to an uninterrupted run."""
    run_dir = str(tmp_path / "crashed")
    result = subprocess.run([sys.executable, "-c", _CRASH_BEFORE_THE_RENAME, run_dir], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 17, result.stderr[-2000:]
    left = os.listdir(os.path.join(run_dir, "checkpoints"))
    assert "6" not in left and any(name.startswith("6.orbax-checkpoint-tmp") for name in left), left
    assert "3" in left and checkpoint.finished_steps(run_dir) == [3]
    assert "'6.orbax-checkpoint-tmp" in result.stdout  # what the directory held at the moment of death

    lines = []
    resumed = loop.run(tiny_config(run_dir, steps=8), log=lines.append)
    assert "resumed from step 3" in "\n".join(lines) and resumed.steps == 8
    assert not any(".orbax-checkpoint-tmp" in name for name in os.listdir(os.path.join(run_dir, "checkpoints")))
    config = tiny_config(str(tmp_path / "uninterrupted"), steps=8)
    config.train.checkpoint_every = 3
    _assert_same_state(resumed.state, loop.run(config, log=QUIET).state)
    shutil.rmtree(run_dir)
