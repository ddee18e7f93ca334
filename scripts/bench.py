"""Speed of the pieces that bound an experiment's throughput, printed as one Markdown table.

    python scripts/bench.py                       # everything, on whatever device jax finds
    python scripts/bench.py --sections=cfg        # only the grammar sampler and parser
    python scripts/bench.py --sections=perf,data  # the performance targets' shapes; each world's data path
    python scripts/bench.py --sections=perf --perf_levers=best,xla_attention,unrolled,remat,float32
    python scripts/bench.py --sections=peer       # lmphys beside the PyTorch peer, same shapes, same machine

Rows: the CFG sampler (tokens/s, on device), the exact CFG parser (strings/s), one training step
of the default model (tokens/s, step time, compile time, MFU where the device peak is known), K
stacked 4x256 models (B=8 each) in one vmapped step against one alone, and KV-cache generation from
BOS (samples/s), and the bioS data of Part 3.1 (100k people with multi5 + permute biographies,
tokenized, on the host CPU), and iGSM problems of Part 2.1 (generated and tokenized in one process
and in worker processes; the full-solution checker). Asked for by name: `perf`, the shapes of the
performance targets (lmphys/perf.py: tokens/s against nanoGPT on an H100, MFU over the matmul peak
measured on this device, compile time, memory, whether fused attention and donation took effect),
with one setting changed at a time by --perf_levers; and `data`, each world's step fed by its real
data path against the same step on a ready batch; `peer`, lmphys's step (scanned and unrolled
layers) and the PyTorch peer (scripts/peers/torch_gpt_step.py, run in a subprocess when torch is
importable) on the same shapes, one after the other, with their ratio: mean step time against
mean step time, as the peer reports it. Figures go in docs/benchmarks.md.

Every flag is checked before anything is measured; a bad one ends with `error: <sentence>` and
exit status 2.
"""
import concurrent.futures
import dataclasses
import functools
import importlib.util
import multiprocessing
import os
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from lmphys import cli, parallel, perf
from lmphys.config import load_config_file
from lmphys.models import decode, sizes, transformer
from lmphys.train import metrics, optim, stack, step as step_lib
from lmphys.worlds import bio, cfg, igsm
from lmphys.worlds.cfg.speed import bench_accepts, bench_sample

# perf lever variants: the best settings with one thing changed
_LEVER_VARIANTS = {
    "xla_attention": {"attention_impl": "xla"},
    "unrolled": {"scan_layers": False},
    "remat": {"remat": True},
    "float32": {"dtype": "float32"},
}

_SECTIONS = flags.DEFINE_list("sections", ["cfg", "train", "stack", "generate", "bio", "igsm"],
                              "Which rows to measure; 'data' (each world's data path), 'perf' (the target shapes, minutes "
                              "on a GPU) and 'peer' (lmphys beside the PyTorch peer) are asked for by name.")
_PERF_ROWS = flags.DEFINE_list("perf_rows", [shape.name for shape in perf.REFERENCE_SHAPES], "perf: which shapes.")
_PERF_LEVERS = flags.DEFINE_list(
    "perf_levers", ["best"],
    f"perf: settings to compare on each shape: best (cuDNN attention on GPUs), or one of {sorted(_LEVER_VARIANTS)}.")
_DATA_CONFIGS = flags.DEFINE_list(
    "data_configs", [],
    "data: configs (file.py[:arg], relative to configs/) whose data path is timed; default: the small "
    "ones on CPU, the paper ones elsewhere.")
_PERF_BATCH_DIVISOR = flags.DEFINE_integer("perf_batch_divisor", 1, "perf: run each shape with this many times fewer rows (CPU smoke runs).",
                                           lower_bound=1)
_STACK_COUNTS = flags.DEFINE_list("stack_models", ["1", "8"], "K values for the stacked-models rows.")
_STACK_SEQ_LEN = flags.DEFINE_integer("stack_seq_len", 512, "Context of the stacked 4x256 models (B=8 each).",
                                      lower_bound=2)
_GRAMMAR = flags.DEFINE_string("grammar", "cfg3f", "Grammar for the sampler and parser rows.")
_CONFIG = flags.DEFINE_string(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "default.py"),
    "Config whose model and batch the train and generate rows use.",
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repetitions per row (after a warm-up).", lower_bound=1)
_PEER_ROWS = flags.DEFINE_list(
    "peer_rows", [], "peer: which shapes (default: the CPU rows on a CPU, the performance targets' elsewhere).")
_PEER_STEPS = flags.DEFINE_integer("peer_steps", 20, "peer: timed steps per row, for lmphys and the peer alike.",
                                   lower_bound=1)

# Every flag is checked before anything is measured: a typo must not cost a long device session.
_SECTION_NAMES = ("cfg", "train", "stack", "generate", "bio", "igsm", "data", "perf", "peer")
flags.register_validator("sections", lambda names: bool(names) and set(names) <= set(_SECTION_NAMES),
                         message=f"each section must be one of {', '.join(_SECTION_NAMES)}")
flags.register_validator("perf_rows", lambda names: set(names) <= {shape.name for shape in perf.REFERENCE_SHAPES},
                         message=f"each row must be one of {', '.join(shape.name for shape in perf.REFERENCE_SHAPES)}")
_PEER_SHAPE_NAMES = [shape.name for shape in perf.PEER_SHAPES_CPU + perf.REFERENCE_SHAPES]
flags.register_validator("peer_rows", lambda names: set(names) <= set(_PEER_SHAPE_NAMES),
                         message=f"each row must be one of {', '.join(_PEER_SHAPE_NAMES)}")
flags.register_validator("perf_levers", lambda names: bool(names) and set(names) <= {"best", *_LEVER_VARIANTS},
                         message=f"each lever must be best or one of {', '.join(_LEVER_VARIANTS)}")
flags.register_validator("stack_models", lambda counts: bool(counts) and all(count.isdigit() and int(count) >= 1
                                                                             for count in counts),
                         message="each K must be a positive integer")


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(first-call seconds incl. compile, best seconds of `repeats` further calls)."""
    started = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - started
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - started)
    return first, best


def bench_cfg(grammar_name: str, repeats: int) -> list[tuple[str, str, str]]:
    sampled = bench_sample(grammar_name, n=16384, repeats=repeats)
    parsed = bench_accepts(grammar_name, n=4096, repeats=max(1, repeats // 2))
    return [
        (f"cfg.sample {grammar_name}, n=16384 per call", f"{sampled['tokens_per_s'] / 1e6:.1f}M tokens/s",
         f"{sampled['strings_per_s']:,.0f} strings/s, mean length {sampled['mean_len']:.0f}"),
        (f"cfg.accepts {grammar_name}, 4096 strings per call", f"{parsed['strings_per_s']:,.0f} strings/s",
         f"{parsed['tokens_per_s'] / 1e6:.2f}M tokens/s"),
    ]


def _setup_model(config):
    task = cfg.task_from_config(config.task)
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    graphdef, params = transformer.init_model(model_cfg, jax.random.key(0))
    return task, model_cfg, graphdef, params


def _time_steps(config, num_models: int, repeats: int) -> tuple[float, float, transformer.ModelConfig]:
    """(compile+first seconds, best step seconds, model config) of K stacked models of `config`'s
    shape (seeds 0..K-1) on one device, data made on device inside the step."""
    task, model_cfg, graphdef, _ = _setup_model(config)
    optimizer = optim.make_optimizer(config.optim)
    states = [step_lib.init_state(transformer.init_model(model_cfg, jax.random.key(seed))[1], optimizer, config.optim)
              for seed in range(num_models)]
    mesh = parallel.make_mesh(config.parallel, num_models, jax.devices()[:1])
    state = parallel.shard_state(mesh, stack.stack(states))
    schedule = optim.Schedule.from_config(config.optim, config.train.steps)
    step_fn = step_lib.make_step_fn(graphdef, optimizer, schedule, task.batch, False, mesh, state)
    keys = [stack.stack([jax.random.key(1000 * salt + seed) for seed in range(num_models)]) for salt in (1, 2)]
    holder = {"state": state}

    def one_step():
        holder["state"], step_metrics = step_fn(holder["state"], *keys)
        return step_metrics["loss"]

    first, best = _timed(one_step, repeats)
    return first, best, model_cfg


def _shape(config) -> str:
    return (f"{config.model.num_layers}x{config.model.width} {config.model.position}, "
            f"B={config.task.batch_size} T={config.task.seq_len}")


def bench_train(config, repeats: int) -> list[tuple[str, str, str]]:
    first, best, model_cfg = _time_steps(config, 1, repeats)
    tokens = config.task.batch_size * config.task.seq_len
    detail = f"step {best * 1e3:.1f} ms; compile+first {first:.1f}s"
    peak = metrics.device_peak_flops()
    if peak:
        mfu = tokens / best * sizes.flops_per_token(model_cfg, config.task.seq_len) / peak
        detail += f"; MFU {mfu:.1%}"
    return [(f"train step {_shape(config)} (data on device)", f"{tokens / best:,.0f} tokens/s", detail)]


def bench_stack(config, counts: list[int], repeats: int) -> list[tuple[str, str, str]]:
    """Tokens/s of K stacked small models (one vmapped step) against one such model alone."""
    config = config.copy_and_resolve_references()
    config.model.num_layers, config.model.width, config.model.num_heads = 4, 256, 4
    config.task.batch_size, config.task.seq_len, config.model.max_len = 8, _STACK_SEQ_LEN.value, _STACK_SEQ_LEN.value
    rows, alone = [], None
    for count in counts:
        first, best, _ = _time_steps(config, count, repeats)
        rate = count * config.task.batch_size * config.task.seq_len / best
        alone = alone or (rate if count == 1 else None)
        gain = f"; {rate / alone:.2f}x one model" if alone and count > 1 else ""
        rows.append((f"K={count} stacked {_shape(config)} each", f"{rate:,.0f} tokens/s",
                     f"step {best * 1e3:.1f} ms; compile+first {first:.1f}s{gain}"))
    return rows


def bench_generate(config, repeats: int) -> list[tuple[str, str, str]]:
    task, _, graphdef, params = _setup_model(config)
    num = config.task.eval_samples
    prompts = jnp.zeros((num, config.task.seq_len), jnp.int32).at[:, 0].set(task.bos_id)
    lengths = jnp.ones((num,), jnp.int32)
    generate = jax.jit(functools.partial(decode.generate, graphdef, eos_id=task.eos_id))
    first, best = _timed(lambda: generate(params, prompts, lengths, jax.random.key(0)), repeats)
    return [(f"generate from BOS, {num} rows x {config.task.seq_len} (untrained model: no early EOS)",
             f"{num / best:,.0f} samples/s", f"first call {first:.1f}s")]


def bench_bio(repeats: int, num_people: int = 100_000) -> list[tuple[str, str, str]]:
    """The Part 3.1 data on the host: people, multi5 + permute biographies (tokenized), QA tokens.
    The first call also builds the vocabulary and the pre-tokenized template and value pieces."""
    augment = bio.Augment(multi=5, permute=True)

    def run_once() -> tuple[float, float, float, int]:
        started = time.perf_counter()
        people = bio.sample_people(0, num_people)
        sampled = time.perf_counter()
        documents = bio.biographies(people, seed=0, augment=augment)
        rendered = time.perf_counter()
        bio.qa_tokens(people)
        return sampled - started, rendered - sampled, time.perf_counter() - rendered, len(documents.tokens)

    started = time.perf_counter()
    bio.tokenizer()
    bio.biographies(bio.sample_people(0, 1), seed=0)
    setup = time.perf_counter() - started
    runs = [run_once() for _ in range(max(1, repeats))]
    sample_s, render_s, qa_s = (min(run[column] for run in runs) for column in range(3))
    tokens = runs[0][3]
    wall = setup + sum(runs[0][:3])
    people = bio.sample_people(0, num_people)
    reverse_s = []
    for _ in range(max(1, repeats)):  # Part 3.2's reversed twins (task.reverse): twice the documents
        started = time.perf_counter()
        reverse_tokens = len(bio.biographies(people, seed=0, augment=dataclasses.replace(augment, reverse=True)).tokens)
        reverse_s.append(time.perf_counter() - started)
    return [
        (f"bio.sample_people n={num_people:,}", f"{num_people / sample_s:,.0f} people/s", f"{sample_s * 1e3:.0f} ms"),
        (f"bio.biographies {num_people:,} people, multi5 + permute, tokenized",
         f"{tokens / render_s / 1e6:.1f}M tokens/s",
         f"{num_people / render_s:,.0f} people/s; {5 * num_people:,} documents, {tokens / 1e6:.1f}M tokens "
         f"in {render_s:.2f}s; cold wall {wall:.1f}s (vocabulary and pieces {setup:.1f}s, people, biographies, QA)"),
        (f"bio.biographies {num_people:,} people, multi5 + permute + reverse", f"{reverse_tokens / min(reverse_s) / 1e6:.1f}M tokens/s",
         f"{10 * num_people:,} documents (each rendering and its reversed twin), {reverse_tokens / 1e6:.1f}M tokens "
         f"in {min(reverse_s):.2f}s"),
        (f"bio.qa_tokens {num_people:,} people", f"{6 * num_people / qa_s:,.0f} QA pairs/s", f"{qa_s:.2f}s"),
    ]


def _igsm_rows(difficulty: str, start: int, count: int) -> int:
    """Generate and tokenize `count` training problems (what one worker of the task does); tokens."""
    total = 0
    for seed in range(start, start + count):
        problem = igsm.generate(seed, difficulty)
        total += len(problem.prompt_ids()[0]) + len(problem.solution_ids) + 1
    return total


def bench_igsm(repeats: int, difficulty: str = "med", count: int = 4000) -> list[tuple[str, str, str]]:
    """iGSM problems on the host (Part 2.1): generation + tokenization in this process and in one
    worker process per CPU core (how the task feeds an accelerator), and the full-solution checker."""
    _igsm_rows(difficulty, 0, 50)  # vocabulary and categories
    one = min(_timed_host(lambda: _igsm_rows(difficulty, 0, count)) for _ in range(max(1, repeats // 2)))
    workers = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(_igsm_rows, [difficulty] * workers, range(workers), [50] * workers))  # start-up, not timed
        started = time.perf_counter()
        chunk = count // workers
        list(pool.map(_igsm_rows, [difficulty] * workers * 2, range(0, 2 * workers * chunk, chunk), [chunk] * workers * 2))
        parallel_s = time.perf_counter() - started
    problems = [igsm.generate(seed, difficulty) for seed in range(1000)]
    check_s = _timed_host(lambda: [igsm.check_solution(p, p.solution_ids) for p in problems])
    return [
        (f"igsm.generate {difficulty} (training ops) + tokens, 1 process", f"{count / one:,.0f} problems/s",
         f"{count} problems in {one:.2f}s"),
        (f"igsm.generate {difficulty} + tokens, {workers} worker processes", f"{2 * workers * chunk / parallel_s:,.0f} problems/s",
         f"{2 * workers * chunk} problems in {parallel_s:.2f}s (spawn start-up excluded)"),
        (f"igsm.check_solution {difficulty} (full solution, token ids in)", f"{len(problems) / check_s:,.0f} solutions/s",
         f"{check_s:.2f}s for {len(problems)}"),
    ]


def bench_perf(row_names: list[str], lever_names: list[str], batch_divisor: int, steps: int) -> list[tuple[str, str, str]]:
    """The target table's shapes (lmphys/perf.py): tokens/s against nanoGPT on an H100, MFU over
    the matmul peak measured here, step and compile time, memory, and whether cuDNN attention and
    donation took effect in the compiled step."""
    shapes = [shape.scaled(batch_divisor) for shape in perf.REFERENCE_SHAPES if shape.name in row_names]
    device = jax.local_devices()[0]
    best = perf.Levers.best_for(device.platform)
    variants = []
    for name in lever_names:
        variants.append(best if name == "best" else dataclasses.replace(best, **_LEVER_VARIANTS[name]))
    compute_dtype = perf.model_config(shapes[0], best).compute_dtype if shapes else jnp.float32
    peak = perf.measure_matmul_peak(compute_dtype, device=device)
    rows = [(f"matmul peak, {jnp.dtype(compute_dtype).name}, measured", f"{peak / 1e12:.1f} TFLOP/s",
             f"data sheet bf16 {metrics.device_peak_flops(device) / 1e12:.0f}" if metrics.device_peak_flops(device) else "MFU's denominator")]
    alone = {}  # tokens/s of one model, by (shape without K, levers): what stacking is compared to
    for shape in shapes:
        for levers in variants:
            stacked = f" K={shape.num_models}" if shape.num_models > 1 else ""
            what = (f"perf {shape.num_layers}/{shape.width}/{shape.num_heads} T={shape.seq_len} B={shape.batch_size}"
                    f"{stacked} V={shape.vocab_size} ({levers.describe()})")
            try:
                report = perf.measure_step(shape, levers, steps=steps, device=device)
            except Exception as error:  # noqa: BLE001 (one failed setting must not cost the rest of a device session)
                rows.append((what, "failed", f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"))
                continue
            vs = report.vs_baseline()
            key = (dataclasses.replace(shape, name="", num_models=1, baseline_tokens_per_s=None), levers)
            if shape.num_models == 1:
                alone[key] = report.tokens_per_s
            detail = [f"step {report.step_s * 1e3:.1f} ms", f"MFU {report.mfu(peak):.1%}",
                      f"compile {report.compile_s:.1f}s", f"memory {report.memory_bytes / 2**30:.2f} GiB",
                      f"fused attention calls {report.hlo.fused_attention_calls}, donated buffers {report.hlo.donated_buffers}"]
            if vs is not None:
                detail.insert(1, f"{vs:.2f}x nanoGPT on H100 ({shape.baseline_tokens_per_s / 1e3:,.0f}k)")
            if shape.num_models > 1 and key in alone:
                detail.insert(1, f"{report.tokens_per_s / alone[key]:.2f}x one model")
            rows.append((what, f"{report.tokens_per_s:,.0f} tokens/s", "; ".join(detail)))
    return rows


_PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "torch_gpt_step.py")


def _peer_shapes(names: list[str]) -> list[perf.PerfShape]:
    """The peer rows: by name, else the CPU rows on a CPU and the target shapes elsewhere; every one
    with the peer's learned absolute positions."""
    known = {shape.name: shape for shape in perf.PEER_SHAPES_CPU + perf.REFERENCE_SHAPES}
    if not names:
        names = [shape.name for shape in (perf.PEER_SHAPES_CPU if jax.default_backend() == "cpu"
                                          else perf.REFERENCE_SHAPES)]
    return [dataclasses.replace(known[name], position="absolute") for name in names]


def run_peer(shape: perf.PerfShape, steps: int) -> tuple[float | None, str]:
    """(tokens/s, its line) of the PyTorch peer on `shape`, in a subprocess; (None, why) when torch
    is not installed or the peer fails."""
    if importlib.util.find_spec("torch") is None:
        return None, "torch is not installed here (pip install torch): peer not run"
    arguments = [shape.num_layers, shape.width, shape.num_heads, shape.seq_len, shape.batch_size, shape.vocab_size,
                 steps, shape.num_models]
    result = subprocess.run([sys.executable, _PEER_SCRIPT, *map(str, arguments)], capture_output=True, text=True)
    line = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    found = re.search(r": ([\d,]+) tokens/s", line)
    if result.returncode != 0 or not found:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"peer failed (status {result.returncode}): {reason[:300]}"
    return float(found.group(1).replace(",", "")), line


def bench_peer(shape_names: list[str], steps: int) -> list[tuple[str, str, str]]:
    """lmphys's step with scanned and with unrolled layers, then the peer, on each shape (one after
    the other, so that they share the machine's state), and lmphys's better one over the peer:
    tokens/s from the mean step time of `steps` timed steps on both sides."""
    device = jax.local_devices()[0]
    rows = []
    for shape in _peer_shapes(shape_names):
        what = (f"{shape.num_layers}/{shape.width}/{shape.num_heads} T={shape.seq_len} B={shape.batch_size} "
                f"V={shape.vocab_size}{f' K={shape.num_models}' if shape.num_models > 1 else ''}")
        ours = {}
        for layers, levers in (("scanned", perf.Levers.best_for(device.platform)),
                               ("unrolled", dataclasses.replace(perf.Levers.best_for(device.platform), scan_layers=False))):
            try:
                report = perf.measure_step(shape, levers, steps=steps, device=device)
            except Exception as error:  # noqa: BLE001 (one failed row must not cost the rest of a device session)
                rows.append((f"peer row {what}: lmphys, {layers}", "failed",
                             f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"))
                continue
            ours[layers] = shape.num_models * shape.batch_size * shape.seq_len / report.mean_step_s
            rows.append((f"peer row {what}: lmphys, {layers} layers", f"{ours[layers]:,.0f} tokens/s",
                         f"mean step {report.mean_step_s * 1e3:.1f} ms (best {report.step_s * 1e3:.1f}); "
                         f"{levers.describe()}, absolute positions"))
        peer_rate, peer_line = run_peer(shape, steps)
        if peer_rate is None:
            rows.append((f"peer row {what}: PyTorch peer", "not run", peer_line))
            continue
        ratio = f"; lmphys/peer {max(ours.values()) / peer_rate:.2f}x (better of lmphys's two)" if ours else ""
        rows.append((f"peer row {what}: PyTorch peer", f"{peer_rate:,.0f} tokens/s", peer_line + ratio))
    return rows


_DATA_CONFIGS_CPU = ("cfg/small.py", "bio/small.py", "igsm/small.py", "depo/small.py", "brevo/small.py", "mano/small.py")
_DATA_CONFIGS_ACCELERATOR = ("cfg/paper.py", "bio/paper.py:pretrain,multi5_permute", "igsm/paper.py:med",
                             "depo/paper.py:depo1", "depo/paper.py:depo2", "brevo/paper.py:brevo1",
                             "brevo/paper.py:brevo2", "mano/paper.py")


def _data_configs(config_names: list[str]) -> list[tuple[str, object]]:
    """(name, config) of each --data_configs entry (file.py[:arg] under configs/), loaded up front."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
    default = _DATA_CONFIGS_CPU if jax.default_backend() == "cpu" else _DATA_CONFIGS_ACCELERATOR
    loaded = []
    for name in config_names or default:
        path, _, arg = name.partition(":")
        loaded.append((name, load_config_file(os.path.join(here, path), *([arg] if arg else []))))
    return loaded


def bench_data(configs: list[tuple[str, object]], steps: int) -> list[tuple[str, str, str]]:
    """Each world's training step fed by its real data path against the same step on a batch
    already on the device (the target: data under 5% of the step)."""
    rows = []
    for name, config in configs:
        try:
            report = perf.measure_data_path(config, steps)
        except Exception as error:  # noqa: BLE001 (as in bench_perf)
            rows.append((f"data path {name}", "failed", f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"))
            continue
        if report.on_host:
            where = (f"host batch {report.batch_s * 1e3:.1f} ms in one process ({report.workers_to_keep_up} "
                     f"worker(s) keep up; {report.workers} configured), transfer {report.transfer_s * 1e3:.1f} ms")
        else:
            where = f"batch made on device in {report.batch_s * 1e3:.2f} ms ({report.batch_s / report.fixed_step_s:.1%} of a step)"
        rows.append((f"data path {name} ({config.model.num_layers}x{config.model.width}, B={config.task.batch_size} "
                     f"T={config.task.seq_len})", f"{report.share:.1%} of the step",
                     f"step {report.fed_step_s * 1e3:.1f} ms fed, {report.fixed_step_s * 1e3:.1f} ms on a fixed batch; {where}"))
    return rows


def _timed_host(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = load_config_file(_CONFIG.value)
    data_configs = _data_configs(_DATA_CONFIGS.value) if "data" in _SECTIONS.value else []
    if "cfg" in _SECTIONS.value:
        cfg.load_grammar(_GRAMMAR.value)
    device = jax.local_devices()[0]
    rows = []
    if "cfg" in _SECTIONS.value:
        rows += bench_cfg(_GRAMMAR.value, _REPEATS.value)
    if "train" in _SECTIONS.value:
        rows += bench_train(config, _REPEATS.value)
    if "stack" in _SECTIONS.value:
        rows += bench_stack(config, [int(count) for count in _STACK_COUNTS.value], _REPEATS.value)
    if "generate" in _SECTIONS.value:
        rows += bench_generate(config, _REPEATS.value)
    if "bio" in _SECTIONS.value:
        rows += bench_bio(_REPEATS.value)
    if "igsm" in _SECTIONS.value:
        rows += bench_igsm(_REPEATS.value)
    if "data" in _SECTIONS.value:
        rows += bench_data(data_configs, max(3, 2 * _REPEATS.value))
    if "perf" in _SECTIONS.value:
        rows += bench_perf(_PERF_ROWS.value, _PERF_LEVERS.value, _PERF_BATCH_DIVISOR.value, max(3, 2 * _REPEATS.value))
    if "peer" in _SECTIONS.value:
        rows += bench_peer(_PEER_ROWS.value, _PEER_STEPS.value)
    print(f"\ndevice: {device.device_kind} x{jax.local_device_count()} ({jax.default_backend()}), "
          f"jax {jax.__version__}, {os.cpu_count()} CPU cores\n")
    print("| what | speed | detail |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    cli.run(main)
