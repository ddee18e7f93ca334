"""Every user mistake in any script ends with `error: <one sentence>` on stderr and exit status 2:
bad flags, config files that are missing, broken or wrong, config fields that do not exist or
values that do not validate, workdirs and sweep directories that are not what a script needs.

The scripts really run (absl's app.run, their flags, cli.run), each case in a process of its own
forked from one driver that imported jax and lmphys once, so ~90 cases take seconds, not minutes.
A case that does not end within CASE_SECONDS is killed and fails (generate.py --retry_rate=2 used
to run forever)."""
import json
import os
import subprocess
import sys

import pytest

from lmphys.config import load_config_file
from tests.conftest import REPO, tiny_config

CASE_SECONDS = 60

_DRIVER = r"""
import json, os, runpy, signal, sys, tempfile, time, traceback
import absl.app, ml_collections.config_flags  # noqa: F401  (imported once, shared by every case)
import lmphys.perf, lmphys.report, lmphys.sweep, lmphys.train.loop, lmphys.worlds  # noqa: F401
from lmphys.worlds import bio, cfg, igsm  # noqa: F401

cases, limit = json.load(sys.stdin), float(sys.argv[1])
results = []
for case in cases:
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        os.environ.update(case["env"])
        sys.argv = [case["script"]] + case["args"]
        status = 0
        try:
            runpy.run_path(case["script"], run_name="__main__")
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            status = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    deadline, status = time.monotonic() + limit, "timeout"
    while time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    results.append({"status": status, "stdout": out.read().decode()[-2000:], "stderr": err.read().decode()[-4000:]})
json.dump(results, sys.stdout)
"""


def _files(tmp):
    """The bad (and a few good) inputs the cases point at, made under `tmp`."""
    def write(name, text):
        (tmp / name).write_text(text)
        return str(tmp / name)

    tiny = "from tests.conftest import tiny_config\n"
    made = {
        "broken": write("broken.py", "def get_config(:\n"),
        "noget": write("noget.py", "CONFIG = {}\n"),
        "retlist": write("retlist.py", "def get_config():\n    return [1]\n"),
        "raises": write("raises.py", "def get_config():\n    return {}['missing']\n"),
        "needarg": write("needarg.py", tiny + "def get_config(variant):\n    return tiny_config('x')\n"),
        "afile": write("afile", "not a directory\n"),
    }
    sweep = (tiny + "import ml_collections\n\ndef get_config():\n    config = ml_collections.ConfigDict()\n"
             f"    config.workdir = {str(tmp / 'sweep')!r}\n    config.base = tiny_config('x', steps=2)\n"
             "    config.grid = ml_collections.ConfigDict({{'seed': {grid}}})\n    config.analyses = {analyses}\n"
             "{extra}    return config\n")
    made["sweep"] = write("sweep.py", sweep.format(grid="[0, 1]", analyses="()", extra="    config.max_models_per_job = 8\n"))
    made["nobase"] = write("nobase.py", sweep.format(grid="[0, 1]", analyses="()", extra="    del config.base\n"))
    made["nogrid"] = write("nogrid.py", sweep.format(grid="[0, 1]", analyses="()", extra="    del config.grid\n"))
    made["gridnotlist"] = write("gridnotlist.py", sweep.format(grid="3", analyses="()", extra=""))
    made["badanalyses"] = write("badanalyses.py", sweep.format(grid="[0]", analyses="('telepathy',)", extra=""))
    made["badgridfield"] = write("badgridfield.py", sweep.format(
        grid="[0]", analyses="()", extra="    config.grid.model = ml_collections.ConfigDict({'depth': [1, 2]})\n"))

    def run_dir(name, config_text=None):
        path = tmp / name
        path.mkdir()
        if config_text is not None:
            (path / "config.json").write_text(config_text)
        return str(path)

    good = tiny_config(str(tmp / "fake_run"))
    made["fake_run"] = run_dir("fake_run", good.to_json())
    for name, config_file, argument in (("biod_run", "capacity.py", "biod,100"), ("bert_run", "small.py", "bert,single"),
                                        ("bios_run", "small.py", "pretrain,single")):  # no checkpoints
        made[name] = run_dir(name, load_config_file(os.path.join(REPO, "configs", "bio", config_file), argument).to_json())
    good.model.num_heads = 3
    made["invalid_run"] = run_dir("invalid_run", good.to_json())
    made["corrupt_json"] = run_dir("corrupt_json", '{"seed": 0, "task": {')
    made["list_json"] = run_dir("list_json", "[1, 2]")
    made["empty_dir"] = run_dir("empty_dir")
    made["not_a_sweep"] = run_dir("not_a_sweep")
    for name, result in (("empty_sweep", None), ("bad_result", "{"), ("partial_result", "{}")):
        os.makedirs(tmp / name / "trials" / ("t" if result is not None else ""), exist_ok=True)
        if result is not None:
            (tmp / name / "trials" / "t" / "result.json").write_text(result)
        made[name] = str(tmp / name)
    return made


def _cases(f):
    """(script, arguments, words the sentence must hold[, environment])."""
    train, sweep, report, probe, generate, bench, igsm_stats = (
        f"scripts/{name}.py" for name in ("train", "sweep", "report", "probe", "generate", "bench", "igsm_stats"))
    return [
        # train.py: flags, config files, config fields and values, workdirs
        (train, ["extra"], "unexpected arguments: extra"),
        (train, ["--bogus=1"], "--bogus is not a flag"),
        (train, ["--config=missing.py"], "'missing.py' does not exist"),
        (train, [f"--config={f['broken']}"], "could not be loaded: SyntaxError"),
        (train, [f"--config={f['noget']}"], "has no get_config() function"),
        (train, [f"--config={f['retlist']}"], "returned a list, not an ml_collections.ConfigDict"),
        (train, [f"--config={f['raises']}"], "get_config() failed with KeyError"),
        (train, [f"--config={f['needarg']}"], "get_config() takes an argument (variant)"),
        (train, ["--config=configs/cfg/small.py:bogus"], "config variant 'bogus' is unknown"),
        (train, ["--config=configs/igsm/small.py:bogus"], "config argument 'bogus' is invalid"),
        (train, ["--config=configs/default.py:extra"], "its get_config() takes no argument"),
        (train, ["--config.model.bogus=3"], "model.bogus is not a field"),
        (train, ["--config.bogus=1"], "bogus is not a field"),
        (train, ["--config.model.num_layers=abc"], "--config.model.num_layers=abc is invalid"),
        (train, ["--config.seed=1.5"], "--config.seed=1.5 is invalid"),
        (train, ["--config.model.num_heads=3"], "model.num_heads = 3 is invalid: it must divide model.width"),
        (train, ["--config.task.eval_prefix_len=64"], "task.eval_prefix_len = 64 is invalid: it must be at most"),
        (train, [f"--config.workdir={f['afile']}"], "it is a file, not a directory"),
        (train, [f"--config.workdir={f['afile']}/run"], "it cannot be made (a file stands where a directory belongs)"),
        (train, ["--config.workdir="], "workdir = '' is invalid"),
        (train, ["--config.train.steps=-5"], "train.steps = -5 is invalid"),
        (train, ["--config.model.position=sinusoidal"], "model.position = 'sinusoidal' is invalid"),
        (train, ["--config.task.name=nope"], "task.name = 'nope' is invalid"),
        (train, ["--config.task.grammar=cfg9z"], "task.grammar = 'cfg9z' is invalid"),
        (train, ["--config.init_from=/nonexistent"], "init_from = '/nonexistent' is invalid"),
        (train, ["--config.lora.embedding_rank=4"], "set init_from too"),
        (train, ["--config.optim.learning_rate=0"], "optim.learning_rate = 0"),
        (train, ["--config.optim.schedule=step"], "optim.schedule = 'step' is invalid"),
        (train, ["--config.task.batch_size=0"], "task.batch_size = 0 is invalid"),
        (train, ["--config.model.dropout=1.5"], "model.dropout = 1.5 is invalid"),
        (train, ["--config.model.kind=bert"], "task.objective"),
        (train, ["--config.train.keep_checkpoints=0"], "train.keep_checkpoints = 0 is invalid"),
        (train, ["--config.train.save_timeout_seconds=0"], "train.save_timeout_seconds = 0"),
        (train, ["--config.parallel.data=3", f"--config.workdir={f['empty_dir']}/p"], "it must be a multiple of data x fsdp = 3"),
        # sweep.py
        (sweep, [], "--config=configs/sweeps/<name>.py is required"),
        (sweep, ["--config=missing.py"], "'missing.py' does not exist"),
        (sweep, [f"--config={f['nobase']}"], "the sweep config has no base"),
        (sweep, [f"--config={f['nogrid']}"], "the sweep config has no grid"),
        (sweep, [f"--config={f['gridnotlist']}"], "it must be a non-empty list"),
        (sweep, [f"--config={f['badanalyses']}"], "the cfg world offers"),
        (sweep, [f"--config={f['badgridfield']}"], "model.depth is not a field of the base config"),
        (sweep, ["--config=configs/sweeps/depth_width.py:bogus"], "scale 'bogus' is unknown"),
        (sweep, [f"--config={f['sweep']}", "--parallel_jobs=0"], "--parallel_jobs=0 is invalid"),
        (sweep, [f"--config={f['sweep']}", "--parallel_jobs=3"], "parallel_jobs = 3 is invalid: it must divide"),
        (sweep, [f"--config={f['sweep']}", "--job_index=3", "--num_jobs=2"], "job_index = 3 is invalid"),
        (sweep, [f"--config={f['sweep']}", "--num_jobs=0"], "--num_jobs=0 is invalid"),
        (sweep, [f"--config={f['sweep']}"], "SLURM_ARRAY_TASK_ID = 'abc' is invalid", {"SLURM_ARRAY_TASK_ID": "abc"}),
        (sweep, [f"--config={f['sweep']}", "--config.max_models_per_job=0"], "max_models_per_job = 0 is invalid"),
        (sweep, [f"--config={f['sweep']}", "--config.base.model.bogus=1"], "base.model.bogus is not a field"),
        (sweep, [f"--config={f['sweep']}", f"--config.workdir={f['afile']}"], "it is a file, not a directory"),
        (sweep, [f"--config={f['gridnotlist']}", "--status"], "it must be a non-empty list"),
        (sweep, [f"--config={f['sweep']}", "extra"], "unexpected arguments: extra"),
        # report.py
        (report, [], "--sweep is required"),
        (report, ["--sweep=/nonexistent"], "holds no trials/ directory"),
        (report, [f"--sweep={f['not_a_sweep']}"], "holds no trials/ directory"),
        (report, [f"--sweep={f['afile']}"], "holds no trials/ directory"),
        (report, [f"--sweep={f['empty_sweep']}"], "holds no trials yet"),
        (report, [f"--sweep={f['bad_result']}"], "result.json is not valid JSON"),
        (report, [f"--sweep={f['partial_result']}"], "result.json lacks overrides, eval, final_loss, analyses"),
        (report, [f"--sweep={f['not_a_sweep']}", "extra"], "unexpected arguments: extra"),
        # probe.py
        (probe, [], "--workdir is required"),
        (probe, ["--workdir=/nonexistent"], "/nonexistent is not a directory"),
        (probe, [f"--workdir={f['afile']}"], "is not a directory"),
        (probe, [f"--workdir={f['empty_dir']}"], "holds no config.json"),
        (probe, [f"--workdir={f['corrupt_json']}"], "config.json is not valid JSON"),
        (probe, [f"--workdir={f['list_json']}"], "holds a JSON list, not a run config"),
        (probe, [f"--workdir={f['invalid_run']}"], "is not a valid run config: model.num_heads = 3"),
        (probe, [f"--workdir={f['fake_run']}"], "holds no finished checkpoint yet"),
        (probe, [f"--workdir={f['fake_run']}", "--num_strings=0"], "--num_strings=0 is invalid"),
        (probe, [f"--workdir={f['fake_run']}", "--num_problems=-1"], "--num_problems=-1 is invalid"),
        (probe, [f"--workdir={f['fake_run']}", "--analyses=bogus"], "it must name one or both of probes, capacity"),
        (probe, [f"--workdir={f['fake_run']}", "extra"], "unexpected arguments: extra"),
        # generate.py
        (generate, ["--retry_rate=2"], "--retry_rate=2.0 is invalid: it must lie in [0, 1)"),
        (generate, ["--retry_rate=-0.5"], "--retry_rate=-0.5 is invalid"),
        (generate, ["--count=0"], "--count=0 is invalid"),
        (generate, ["--op=0"], "--op=0 is invalid"),
        (generate, ["--op=1000"], "op = 1000"),
        (generate, ["--seed=-1"], "--seed=-1 is invalid"),
        (generate, ["--temperature=-1"], "--temperature=-1 is invalid"),
        (generate, ["--difficulty=bogus"], "--difficulty=bogus is invalid"),
        (generate, ["--split=bogus"], "--split=bogus is invalid"),
        (generate, [f"--workdir={f['fake_run']}"], "trained on the cfg task, not igsm, bio, depo, brevo or mano"),
        (generate, [f"--workdir={f['fake_run']}", "--temperature=1"], "--temperature samples iGSM solutions only"),
        (generate, [f"--workdir={f['biod_run']}"], "trained on a bioD world, which has no questions"),
        (generate, [f"--workdir={f['bert_run']}"], "is an encoder (bert), which does not generate answers"),
        (generate, [f"--workdir={f['bios_run']}"], "holds no finished checkpoint yet"),
        (generate, [f"--workdir={f['bios_run']}", "--count=0"], "--count=0 is invalid"),
        (generate, ["--workdir=/nonexistent"], "/nonexistent is not a directory"),
        (generate, [f"--workdir={f['corrupt_json']}"], "config.json is not valid JSON"),
        (generate, ["extra"], "unexpected arguments: extra"),
        (generate, ["--world=bogus"], "--world=bogus is invalid"),
        (generate, ["--world=brevo1", "--size=2"], "task.max_size = 2 is invalid"),
        # bench.py: every flag is checked before anything is measured
        (bench, ["--sections=bogus"], "each section must be one of"),
        (bench, ["--sections="], "each section must be one of"),
        (bench, ["--sections=perf", "--perf_rows=bogus"], "each row must be one of"),
        (bench, ["--sections=perf", "--perf_levers=bogus"], "each lever must be best or one of"),
        (bench, ["--stack_models=abc"], "each K must be a positive integer"),
        (bench, ["--stack_models=0"], "each K must be a positive integer"),
        (bench, ["--repeats=0"], "--repeats=0 is invalid"),
        (bench, ["--perf_batch_divisor=0"], "--perf_batch_divisor=0 is invalid"),
        (bench, ["--config=missing.py"], "'missing.py' does not exist"),
        (bench, [f"--config={f['broken']}"], "could not be loaded: SyntaxError"),
        (bench, ["--sections=data", "--data_configs=missing.py"], "missing.py' does not exist"),
        (bench, ["--sections=cfg", "--grammar=bogus"], "unknown grammar 'bogus'"),
        (bench, ["extra"], "unexpected arguments: extra"),
        (bench, ["--sections=peer", "--peer_rows=bogus"], "each row must be one of"),
        (bench, ["--sections=peer", "--peer_steps=0"], "--peer_steps=0 is invalid"),
        # igsm_stats.py
        (igsm_stats, ["--count=0"], "--count=0 is invalid"),
        (igsm_stats, ["--per_op=-1"], "--per_op=-1 is invalid"),
        (igsm_stats, ["extra"], "unexpected arguments: extra"),
    ]


def test_every_user_mistake_ends_with_one_sentence_and_status_2(tmp_path):
    cases = _cases(_files(tmp_path))
    assert len(cases) >= 60
    payload = [{"script": os.path.join(REPO, case[0]), "args": case[1], "env": case[3] if len(case) > 3 else {}}
               for case in cases]
    driver = subprocess.run([sys.executable, "-c", _DRIVER, str(CASE_SECONDS)], input=json.dumps(payload),
                            cwd=REPO, capture_output=True, text=True, timeout=CASE_SECONDS * 3 + 5 * len(cases))
    assert driver.returncode == 0, driver.stderr[-3000:]
    results = json.loads(driver.stdout)
    wrong = []
    for case, result in zip(cases, results, strict=True):
        lines = result["stderr"].strip().splitlines()
        last = lines[-1] if lines else ""
        ok = (result["status"] == 2 and last.startswith("error: ") and case[2] in last
              and "Traceback" not in result["stderr"])
        if not ok:
            wrong.append(f"{case[0]} {' '.join(case[1])}: status {result['status']}, stderr ends "
                         f"{result['stderr'][-600:]!r}")
    assert not wrong, f"{len(wrong)} of {len(cases)} bad inputs:\n" + "\n".join(wrong)


@pytest.mark.parametrize("script", ["train.py", "sweep.py"])
def test_a_bad_config_argument_is_one_sentence_from_the_real_entry_point(script):
    """The same as above without the driver: `python scripts/<script> --config=<file>:<bad>`."""
    config = "configs/cfg/small.py:bogus" if script == "train.py" else "configs/sweeps/depth_width.py:bogus"
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), f"--config={config}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "bogus" in result.stderr and "Traceback" not in result.stderr
