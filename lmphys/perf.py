"""Speed of one training step on one device: the shapes of lmphys's performance targets against a
hand-tuned PyTorch baseline, MFU over the card's measured matmul peak, and what the compiled
program does (DESIGN.md principle 7: measured, not assumed). scripts/bench.py's `perf` rows.

- `REFERENCE_SHAPES`: the target table's shapes (GPT, rotary, AdamW, random tokens, vocabulary 64
  unless said) with nanoGPT's bench.py tokens/s on one H100 (PyTorch 2.11, torch.compile, bf16,
  fused AdamW; measured 2026-11-27). lmphys's target is 1.15x each, and 55% MFU on the 12/768 rows.
- `measure_matmul_peak`: the device's dense matmul FLOP/s in the model's compute dtype, timed on
  square matmuls; MFU's denominator (the data sheet's peak overstates what a card reaches).
- `measure_step`: tokens/s, step time, compile time, memory from the compiled program, analytic
  FLOPs per token (sizes.flops_per_token) and `HloFacts` of the compiled step.
- `Levers`: the settings measured against each other (fused attention, compute dtype, scanned or
  unrolled layers, remat); donation of the state and the absence of per-step host syncs are
  always on (train/step.py, train/loop.py) and checked here through the HLO's aliases.
"""
from __future__ import annotations

import dataclasses
import re
import time

import jax
import jax.numpy as jnp
import ml_collections

from lmphys import parallel
from lmphys.models import sizes, transformer
from lmphys.train import host_data, optim, runs, stack, step as step_lib
from lmphys.worlds.base import Batch


@dataclasses.dataclass(frozen=True)
class PerfShape:
    """One row of the target table: a GPT of this shape trained on random tokens."""

    name: str
    num_layers: int
    width: int
    num_heads: int
    seq_len: int
    batch_size: int  # per model
    vocab_size: int = 64
    num_models: int = 1  # K models stacked in one vmapped step
    baseline_tokens_per_s: float | None = None  # nanoGPT on one H100, all K models together
    position: str = "rope"  # the target rows are rotary; the peer rows learn absolute positions as the peer does
    canon: str = ""  # Part 4.1's Canon layers (config.model.canon), to time what they cost
    mlp: str = "gelu"  # gelu or swiglu (config.model.mlp)

    def scaled(self, divisor: int) -> "PerfShape":
        """The same row with `divisor` times fewer rows per batch (at least 1): CPU smoke runs."""
        return dataclasses.replace(self, batch_size=max(1, self.batch_size // divisor))


REFERENCE_SHAPES = (
    PerfShape("gpt2-124M", 12, 768, 12, 1024, 12, vocab_size=50304, baseline_tokens_per_s=440e3),
    PerfShape("12/768", 12, 768, 12, 512, 64, baseline_tokens_per_s=692e3),
    PerfShape("16/576", 16, 576, 9, 512, 64, baseline_tokens_per_s=754e3),
    PerfShape("4/1920", 4, 1920, 30, 512, 64, baseline_tokens_per_s=464e3),
    PerfShape("4/256", 4, 256, 4, 512, 64, baseline_tokens_per_s=6.24e6),
    # Stacking: K=8 models at B=8 each must give >= 3x the tokens/s of one model at B=8.
    PerfShape("4/256 B=8", 4, 256, 4, 512, 8),
    PerfShape("4/256 B=8 K=8", 4, 256, 4, 512, 8, num_models=8),
)

# The rows lmphys is timed on beside the PyTorch peer (scripts/peers/torch_gpt_step.py) on a CPU:
# the peer's architecture (learned absolute positions, tied embeddings, GELU MLP 4x, AdamW),
# vocabulary 64. On an accelerator the peer runs the REFERENCE_SHAPES with learned positions.
PEER_SHAPES_CPU = (
    PerfShape("cpu 4/128", 4, 128, 4, 64, 32, position="absolute"),
    PerfShape("cpu 4/256", 4, 256, 4, 256, 8, position="absolute"),
    PerfShape("cpu 8/256", 8, 256, 8, 128, 16, position="absolute"),
)


@dataclasses.dataclass(frozen=True)
class Levers:
    """Model settings compared in the perf rows (see config.model for each)."""

    attention_impl: str = "auto"  # auto / xla / cudnn
    dtype: str = "auto"  # auto: bfloat16 on accelerators, float32 on CPU
    scan_layers: bool = True
    remat: bool = False

    @classmethod
    def best_for(cls, platform: str) -> "Levers":
        """What the perf rows use unless told otherwise: cuDNN's fused attention on NVIDIA GPUs."""
        return cls(attention_impl="cudnn") if platform == "gpu" else cls()

    def describe(self) -> str:
        layers = "scan" if self.scan_layers else "unrolled"
        return f"attention {self.attention_impl}, {self.dtype}, {layers}{', remat' if self.remat else ''}"


@dataclasses.dataclass(frozen=True)
class HloFacts:
    """What the compiled step does, read from its optimized HLO text."""

    fused_attention_calls: int  # cuDNN flash-attention custom calls (forward and backward)
    gemm_calls: int  # library matmul calls (cuBLAS on GPU; dots on CPU)
    while_loops: int  # scanned layers appear as loops
    donated_buffers: int  # state buffers updated in place (input_output_alias entries)
    fusions: int


@dataclasses.dataclass(frozen=True)
class StepReport:
    """One perf row's measurement."""

    shape: PerfShape
    levers: Levers
    tokens_per_s: float
    step_s: float  # the best step
    mean_step_s: float  # the mean over the timed steps (what the peer reports)
    compile_s: float
    memory_bytes: int  # arguments + outputs - donated + temporaries of the compiled step
    flops_per_token: float  # analytic (matmuls x3, causal attention halved)
    hlo: HloFacts

    def mfu(self, peak_flops: float) -> float:
        return self.tokens_per_s * self.flops_per_token / peak_flops

    def vs_baseline(self) -> float | None:
        base = self.shape.baseline_tokens_per_s
        return self.tokens_per_s / base if base else None


def model_config(shape: PerfShape, levers: Levers) -> transformer.ModelConfig:
    """A GPT of the row's shape (rotary, GELU MLP and no Canon layers unless the row says), no
    dropout, tied embeddings, MLP ratio 4."""
    return transformer.ModelConfig(
        kind="gpt", num_layers=shape.num_layers, num_heads=shape.num_heads, width=shape.width,
        vocab_size=shape.vocab_size, mlp_ratio=4, max_len=shape.seq_len, dropout=0.0, tie_embeddings=True,
        position=shape.position, canon=shape.canon, mlp=shape.mlp, dtype=levers.dtype,
        scan_layers=levers.scan_layers, attention_impl=levers.attention_impl, remat=levers.remat,
    )


def random_tokens_batch(shape: PerfShape):
    """make_batch(key): uniformly random tokens, the loss on every position (the baseline's data)."""

    def make_batch(key: jax.Array) -> Batch:
        tokens = jax.random.randint(key, (shape.batch_size, shape.seq_len + 1), 0, shape.vocab_size, jnp.int32)
        return Batch(tokens[:, :-1], tokens[:, 1:], jnp.ones((shape.batch_size, shape.seq_len), jnp.float32))

    return make_batch


def _optim_config() -> ml_collections.ConfigDict:
    """AdamW as the papers train: (0.9, 0.98), weight decay 0.1, clipping at 1, cosine schedule."""
    return ml_collections.ConfigDict({
        "learning_rate": 1e-3, "b1": 0.9, "b2": 0.98, "eps": 1e-6, "weight_decay": 0.1,
        "warmup_steps": 100, "schedule": "cosine", "final_lr_fraction": 0.1, "grad_clip": 1.0,
    })


def _parallel_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"models": 1, "data": -1, "fsdp": 1})


def hlo_facts(hlo_text: str) -> HloFacts:
    """Count the operations that tell whether a lever took effect."""
    header = hlo_text.split("\n", 1)[0]  # HloModule ..., input_output_alias={ {0}: (0, {}, may-alias), ... }
    return HloFacts(
        fused_attention_calls=len(re.findall(r'custom_call_target="__cudnn\$fmha', hlo_text)),
        gemm_calls=len(re.findall(r'custom_call_target="__cublas|\bdot\(', hlo_text)),
        while_loops=len(re.findall(r"\bwhile\(", hlo_text)),
        donated_buffers=len(re.findall(r"\{[\d, ]*\}: \(\d+, \{[\d, ]*\}, (?:may|must)-alias\)", header)),
        fusions=len(re.findall(r"^\s*(?:ROOT )?%?\S+ = \S+ fusion\(", hlo_text, re.MULTILINE)),
    )


def compiled_memory_bytes(compiled) -> int:
    """Device memory the step needs by XLA's own account: live arguments and outputs (donated
    buffers counted once) plus temporaries."""
    stats = compiled.memory_analysis()
    if stats is None:
        return 0
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
               + stats.temp_size_in_bytes)


def measure_step(shape: PerfShape, levers: Levers, steps: int = 10, device: jax.Device | None = None) -> StepReport:
    """Compile the row's training step (K stacked models, data made on device), run it `steps`
    times after one warm-up step and report the best and the mean step time."""
    device = device or jax.local_devices()[0]
    model_cfg = model_config(shape, levers)
    optim_cfg = _optim_config()
    optimizer = optim.make_optimizer(optim_cfg)
    graphdef = transformer.model_graph(model_cfg)
    states = [step_lib.init_state(transformer.init_model(model_cfg, jax.random.key(seed))[1], optimizer, optim_cfg)
              for seed in range(shape.num_models)]
    mesh = parallel.make_mesh(_parallel_config(), shape.num_models, [device])
    state = parallel.shard_state(mesh, stack.stack(states))
    del states
    schedule = optim.Schedule.from_config(optim_cfg, 10_000)
    step_fn = step_lib.make_step_fn(graphdef, optimizer, schedule, random_tokens_batch(shape), False, mesh, state)
    keys = [stack.stack([jax.random.key(1000 * salt + seed) for seed in range(shape.num_models)]) for salt in (1, 2)]

    started = time.perf_counter()
    compiled_step = step_fn.compile(state, *keys)
    compile_s = time.perf_counter() - started
    state, _ = compiled_step(state, *keys)
    jax.block_until_ready(state)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        state, step_metrics = compiled_step(state, *keys)
        jax.block_until_ready(step_metrics["loss"])
        times.append(time.perf_counter() - started)
    best = min(times)
    compiled = compiled_step.compiled
    return StepReport(
        shape=shape, levers=levers,
        tokens_per_s=shape.num_models * shape.batch_size * shape.seq_len / best,
        step_s=best, mean_step_s=sum(times) / len(times), compile_s=compile_s, memory_bytes=compiled_memory_bytes(compiled),
        flops_per_token=sizes.flops_per_token(model_cfg, shape.seq_len),
        hlo=hlo_facts(compiled.as_text()),
    )


def measure_matmul_peak(dtype: jnp.dtype, size: int | None = None, repeats: int = 20,
                        device: jax.Device | None = None) -> float:
    """Dense matmul FLOP/s in `dtype`: the best of `repeats` chained [size, size] products
    (8192 on accelerators, 1024 on CPU)."""
    device = device or jax.local_devices()[0]
    size = size or (1024 if device.platform == "cpu" else 8192)
    a = jax.device_put(jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype), device)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype) / size**0.5, device)
    chain = 8  # products per call, so dispatch is not what is timed

    @jax.jit
    def products(x, y):
        for _ in range(chain):
            x = x @ y
        return x

    jax.block_until_ready(products(a, b))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(products(a, b))
        best = min(best, time.perf_counter() - started)
    return chain * 2 * size**3 / best


@dataclasses.dataclass(frozen=True)
class DataPathReport:
    """How much of a world's training step goes to its data (the target: under 5% for every world).

    `fed_step_s` is the time per step of the real pipeline (the task's on-device batch inside the
    step, or host batches from worker processes placed on the device between steps);
    `fixed_step_s` the same step on one batch already on the device. `batch_s` is one batch alone
    (on device: its jitted maker; on the host: one process) and `transfer_s` placing a host batch
    on the device.
    """

    world: str
    on_host: bool
    workers: int
    fed_step_s: float
    fixed_step_s: float
    batch_s: float
    transfer_s: float

    @property
    def share(self) -> float:
        """The share of the fed step spent beyond the same step on ready data."""
        return max(0.0, self.fed_step_s - self.fixed_step_s) / self.fed_step_s

    @property
    def workers_to_keep_up(self) -> int:
        """Host worlds: worker processes needed to make batches as fast as the step uses them."""
        return max(1, -int(-self.batch_s // self.fixed_step_s))


def _timed_steps(run_step, steps: int) -> float:
    """Seconds per step over `steps` calls after two warm-up calls (dispatch stays asynchronous)."""
    jax.block_until_ready(run_step(0))
    jax.block_until_ready(run_step(1))
    started = time.perf_counter()
    for index in range(steps):
        result = run_step(2 + index)
    jax.block_until_ready(result)
    return (time.perf_counter() - started) / steps


def measure_data_path(config: ml_collections.ConfigDict, steps: int = 10) -> DataPathReport:
    """Time a config's training step fed by its world's data pipeline against the same step on a
    fixed batch (one model, the config's device mesh reduced to the first device)."""
    task = runs.build_task(config)
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    graphdef, params = transformer.init_model(model_cfg, jax.random.key(0))
    optimizer = optim.make_optimizer(config.optim)
    mesh = parallel.make_mesh(_parallel_config(), 1, jax.local_devices()[:1])
    state = parallel.shard_state(mesh, stack.stack([step_lib.init_state(params, optimizer, config.optim)]))
    schedule = optim.Schedule.from_config(config.optim, config.train.steps)
    use_dropout = config.model.dropout > 0
    keys = [stack.stack([jax.random.key(salt)]) for salt in (1, 2)]
    rows = parallel.stacked_rows_sharding(mesh)
    shape = (1, config.task.batch_size, config.task.seq_len)
    fixed_fn = step_lib.make_step_fn(graphdef, optimizer, schedule, None, use_dropout, mesh, state, host_batches=True)
    holder = {"state": state}

    def run_fixed(batch):
        def run_step(_index):
            holder["state"], step_metrics = fixed_fn(holder["state"], *keys, batch)
            return step_metrics["loss"]
        return run_step

    on_host = hasattr(task, "host_batch")
    workers, transfer_s = 0, 0.0
    if on_host:
        workers = task.data_workers
        started = time.perf_counter()
        host_rows = host_data.stacked_rows(task, [0], 0)
        batch_s = time.perf_counter() - started
        started = time.perf_counter()
        fixed_batch = jax.block_until_ready(host_data.on_mesh(host_rows, rows, shape, 0))
        transfer_s = time.perf_counter() - started
        fixed_step_s = _timed_steps(run_fixed(fixed_batch), steps)
        with host_data.HostBatches(task, [0], 0, workers, prefetch=max(4, 2 * workers)) as host:
            def run_fed(index):
                batch = host_data.on_mesh(host.get(index), rows, shape, index)
                holder["state"], step_metrics = fixed_fn(holder["state"], *keys, batch)
                return step_metrics["loss"]
            fed_step_s = _timed_steps(run_fed, steps)
    else:
        task_data = getattr(task, "data", None)
        make_batch = jax.jit(task.batch) if task_data is None else jax.jit(lambda key: task.batch(key, task_data))
        one_batch = jax.block_until_ready(make_batch(jax.random.key(0)))
        started = time.perf_counter()
        for index in range(steps):
            made = make_batch(jax.random.key(index))
        jax.block_until_ready(made)
        batch_s = (time.perf_counter() - started) / steps
        fixed_batch = jax.device_put(jax.tree.map(lambda array: array[None], one_batch), rows)
        fixed_step_s = _timed_steps(run_fixed(fixed_batch), steps)
        fed_fn = step_lib.make_step_fn(graphdef, optimizer, schedule, task.batch, use_dropout, mesh, state, task_data)

        def run_fed(_index):
            holder["state"], step_metrics = fed_fn(holder["state"], *keys)
            return step_metrics["loss"]
        fed_step_s = _timed_steps(run_fed, steps)
    return DataPathReport(config.task.name, on_host, workers, fed_step_s, fixed_step_s, batch_s, transfer_s)
