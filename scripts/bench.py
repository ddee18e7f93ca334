"""Speed of the pieces that bound an experiment's throughput, printed as one Markdown table.

    python scripts/bench.py                       # everything, on whatever device jax finds
    python scripts/bench.py --sections=cfg        # only the grammar sampler and parser

Rows: the CFG sampler (tokens/s, on device), the exact CFG parser (strings/s), one training step
of the default model (tokens/s, step time, compile time, MFU where the device peak is known), and
KV-cache generation from BOS (samples/s). Figures go in the README's benchmark table.
"""
import functools
import os
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from lmphys.config import load_config_file
from lmphys.models import decode, transformer
from lmphys.tasks import cfg, cfg_speed
from lmphys.train import metrics, optim, step as step_lib

_SECTIONS = flags.DEFINE_list("sections", ["cfg", "train", "generate"], "Which rows to measure.")
_GRAMMAR = flags.DEFINE_string("grammar", "cfg3f", "Grammar for the sampler and parser rows.")
_CONFIG = flags.DEFINE_string(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "default.py"),
    "Config whose model and batch the train and generate rows use.",
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repetitions per row (after a warm-up).")


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
    sampled = cfg_speed.bench_sample(grammar_name, n=16384, repeats=repeats)
    parsed = cfg_speed.bench_accepts(grammar_name, n=4096, repeats=max(1, repeats // 2))
    return [
        (f"cfg.sample {grammar_name}, n=16384 per call", f"{sampled['tokens_per_s'] / 1e6:.1f}M tokens/s",
         f"{sampled['strings_per_s']:,.0f} strings/s, mean length {sampled['mean_len']:.0f}"),
        (f"cfg.accepts {grammar_name}, 4096 strings per call", f"{parsed['strings_per_s']:,.0f} strings/s",
         f"{parsed['tokens_per_s'] / 1e6:.2f}M tokens/s"),
    ]


def _setup_model(config):
    task = cfg.task_from_config(config.task)
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    graphdef, params = step_lib.init_model(model_cfg, jax.random.key(0))
    return task, model_cfg, graphdef, params


def bench_train(config, repeats: int) -> list[tuple[str, str, str]]:
    task, model_cfg, graphdef, params = _setup_model(config)
    optimizer = optim.make_optimizer(config.optim, config.train.steps)
    state = step_lib.init_state(params, optimizer)
    step_fn = step_lib.make_step_fn(
        graphdef, optimizer, task.batch, jax.random.key(1), jax.random.key(2), use_dropout=False
    )
    holder = {"state": state}

    def one_step():
        holder["state"], step_metrics = step_fn(holder["state"])
        return step_metrics["loss"]

    first, best = _timed(one_step, repeats)
    tokens = config.task.batch_size * config.task.seq_len
    detail = f"step {best * 1e3:.1f} ms; compile+first {first:.1f}s"
    peak = metrics.device_peak_flops()
    if peak:
        mfu = tokens / best * transformer.flops_per_token(model_cfg, config.task.seq_len) / peak
        detail += f"; MFU {mfu:.1%}"
    name = (f"train step {config.model.num_layers}x{config.model.width} {config.model.position}, "
            f"B={config.task.batch_size} T={config.task.seq_len} (data on device)")
    return [(name, f"{tokens / best:,.0f} tokens/s", detail)]


def bench_generate(config, repeats: int) -> list[tuple[str, str, str]]:
    task, _, graphdef, params = _setup_model(config)
    num = config.task.eval_samples
    prompts = jnp.zeros((num, config.task.seq_len), jnp.int32).at[:, 0].set(task.bos_id)
    lengths = jnp.ones((num,), jnp.int32)
    generate = jax.jit(functools.partial(decode.generate, graphdef, eos_id=task.eos_id))
    first, best = _timed(lambda: generate(params, prompts, lengths, jax.random.key(0)), repeats)
    return [(f"generate from BOS, {num} rows x {config.task.seq_len} (untrained model: no early EOS)",
             f"{num / best:,.0f} samples/s", f"first call {first:.1f}s")]


def main(argv):
    del argv
    config = load_config_file(_CONFIG.value)
    device = jax.local_devices()[0]
    rows = []
    if "cfg" in _SECTIONS.value:
        rows += bench_cfg(_GRAMMAR.value, _REPEATS.value)
    if "train" in _SECTIONS.value:
        rows += bench_train(config, _REPEATS.value)
    if "generate" in _SECTIONS.value:
        rows += bench_generate(config, _REPEATS.value)
    print(f"\ndevice: {device.device_kind} x{jax.local_device_count()} ({jax.default_backend()}), "
          f"jax {jax.__version__}, {os.cpu_count()} CPU cores\n")
    print("| what | speed | detail |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    app.run(main)
