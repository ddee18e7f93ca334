"""The performance measurements (lmphys/perf.py) measure what they claim: the analytic FLOPs that
MFU uses agree with XLA's own count of the compiled step, the compiled step updates the state in
place and scans its layers, memory covers the state, and the data-path timer feeds real batches."""
import dataclasses

import jax
import numpy as np
import pytest

from lmphys import perf
from lmphys.config import load_config_file
from lmphys.models import sizes, transformer
from lmphys.train import optim, stack, step as step_lib


def compiled_step(shape: perf.PerfShape, levers: perf.Levers):
    """The compiled training step of `shape` and the number of leaves in its state."""
    model_cfg = perf.model_config(shape, levers)
    optim_cfg = perf._optim_config()
    optimizer = optim.make_optimizer(optim_cfg)
    graphdef, params = transformer.init_model(model_cfg, jax.random.key(0))
    from lmphys import parallel

    mesh = parallel.make_mesh(perf._parallel_config(), 1, jax.devices()[:1])
    state = parallel.shard_state(mesh, stack.stack([step_lib.init_state(params, optimizer, optim_cfg)]))
    step_fn = step_lib.make_step_fn(graphdef, optimizer, optim.Schedule.from_config(optim_cfg, 100),
                                    perf.random_tokens_batch(shape), False, mesh, state)
    keys = [stack.stack([jax.random.key(salt)]) for salt in (1, 2)]
    return step_fn.compile(state, *keys), state, keys


@pytest.mark.parametrize("shape", [
    perf.PerfShape("matmul-heavy", 2, 256, 4, 64, 8),
    perf.PerfShape("head-heavy", 2, 128, 2, 128, 4, vocab_size=512),
    perf.PerfShape("canon swiglu", 2, 256, 4, 64, 8, canon="ABCD", mlp="swiglu"),
])
def test_analytic_flops_match_xla_count_of_the_compiled_step(shape):
    # XLA counts a loop body once, so the layers are unrolled here; it also computes the masked
    # half of causal attention, hence the unhalved count. Elementwise work and AdamW add a few %.
    levers = perf.Levers(scan_layers=False)
    compiled = compiled_step(shape, levers)[0].compiled
    analysis = compiled.cost_analysis()
    xla_flops = (analysis[0] if isinstance(analysis, list) else analysis)["flops"]
    model_cfg = perf.model_config(shape, levers)
    tokens = shape.batch_size * shape.seq_len
    executed = sizes.flops_per_token(model_cfg, shape.seq_len, halve_causal=False) * tokens
    assert 1.0 <= xla_flops / executed < 1.08
    assert sizes.flops_per_token(model_cfg, shape.seq_len) < executed / tokens


@pytest.mark.slow
def test_compiled_step_donates_the_state_scans_layers_and_counts_its_memory():
    shape = perf.PerfShape("tiny", 3, 64, 2, 32, 4)
    scanned, state, keys = compiled_step(shape, perf.Levers())
    unrolled = compiled_step(shape, perf.Levers(scan_layers=False))[0]
    facts = perf.hlo_facts(scanned.compiled.as_text())
    leaves = jax.tree.leaves(state)
    # every state array the step changes is updated in place (the schedule's hparams pass through)
    assert facts.donated_buffers >= len(leaves) - len(jax.tree.leaves(state["hparams"]))
    assert facts.while_loops >= perf.hlo_facts(unrolled.compiled.as_text()).while_loops + 2
    assert facts.fused_attention_calls == 0  # CPU: no cuDNN
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
    assert perf.compiled_memory_bytes(scanned.compiled) >= state_bytes
    # the compiled program is the step: it trains (a repeated batch's loss falls)
    losses = []
    for _ in range(3):
        state, metrics = scanned(state, *keys)
        losses.append(float(metrics["loss"][0]))
    assert losses[-1] < losses[0]


def test_measure_step_reports_a_consistent_row():
    shape = perf.PerfShape("tiny", 2, 64, 2, 32, 4, num_models=2, baseline_tokens_per_s=1e3)
    report = perf.measure_step(shape, perf.Levers(), steps=2)
    assert report.tokens_per_s == pytest.approx(2 * 4 * 32 / report.step_s)
    assert report.vs_baseline() == pytest.approx(report.tokens_per_s / 1e3)
    assert report.mfu(2 * report.tokens_per_s * report.flops_per_token) == pytest.approx(0.5)
    assert report.compile_s > 0 and report.memory_bytes > 0


def test_reference_shapes_are_the_issue_table():
    by_name = {shape.name: shape for shape in perf.REFERENCE_SHAPES}
    assert by_name["gpt2-124M"].vocab_size == 50304 and by_name["gpt2-124M"].seq_len == 1024
    assert {(s.num_layers, s.width, s.num_heads) for s in perf.REFERENCE_SHAPES} == {
        (12, 768, 12), (16, 576, 9), (4, 1920, 30), (4, 256, 4)}
    assert by_name["4/256 B=8 K=8"].num_models == 8
    assert dataclasses.replace(by_name["12/768"]).scaled(16).batch_size == 4


@pytest.mark.parametrize("config_file,on_host", [("configs/cfg/small.py", False), ("configs/igsm/small.py", True)])
def test_data_path_feeds_the_step_with_the_worlds_batches(config_file, on_host):
    config = load_config_file(config_file)
    config.model.num_layers, config.model.width, config.task.batch_size = 1, 32, 4
    report = perf.measure_data_path(config, steps=2)
    assert report.on_host is on_host
    assert report.fed_step_s > 0 and report.fixed_step_s > 0 and report.batch_s > 0
    assert 0.0 <= report.share < 1.0
    assert (report.transfer_s > 0) is on_host
    assert report.workers_to_keep_up == max(1, int(np.ceil(report.batch_s / report.fixed_step_s)))
