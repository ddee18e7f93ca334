"""Analyses of trained knowledge-world models (Part 3), run by sweeps after training and by
scripts/probe.py: the capacity of Part 3.3 (bits of knowledge per parameter, also after int8/int4
quantization) and the P/Q probes of Part 3.1.

Both read the run's config and final parameters; the data they measure on is rebuilt from the
config (the world is a function of task.world_seed), so an analysis can be rerun on any finished
workdir without the training process.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from lmphys import capacity
from lmphys.models import transformer
from lmphys.tasks import bio, bio_d
from lmphys.train import loop

QUANTIZATIONS = (8, 4)


def _measure_bits(task: bio.BioTask, graphdef) -> Callable[[Any], dict[str, float]]:
    """params -> bits of knowledge the model holds about the task's people (whole world, training
    data); the documents and the compiled forward pass are made once for every weight variant."""
    apply = jax.jit(lambda params, tokens: jax.nn.log_softmax(transformer.apply(graphdef, params, tokens)))
    if task.config.world == "biod":
        documents = bio_d.documents(task.world, task.config.world_seed, copies=1)
        return lambda params: capacity.measure_biod_bits(
            lambda tokens: apply(params, jnp.asarray(tokens)), documents, seq_len=task.seq_len)
    documents = bio.biographies(task.people, task.config.world_seed)  # each person's fixed rendering
    return lambda params: capacity.measure_bios_bits(
        lambda tokens: apply(params, jnp.asarray(tokens)), documents, bos_id=task.bos_id, pad_id=task.pad_id,
        seq_len=task.seq_len)


def capacity_analysis(config: ml_collections.ConfigDict, params: Any) -> dict[str, Any]:
    """{"bits", "bits_per_param", and the same after int8 / int4 weight quantization}."""
    if config.model.kind != "gpt":
        return {}
    setup = loop._setup(config)
    measure = _measure_bits(setup.task, setup.graphdef)
    num_params = transformer.num_params(params)
    out: dict[str, Any] = {"params": num_params}
    for label, weights in [("fp32", params)] + [(f"int{bits}", capacity.quantize(params, bits)) for bits in QUANTIZATIONS]:
        bits = measure(weights)
        out[label] = {name: float(value) for name, value in bits.items()}
        out[f"bits_per_param_{label}"] = float(bits["total"]) / num_params
    return out


def probe_analysis(config: ml_collections.ConfigDict, params: Any, seed: int = 0) -> dict[str, Any]:
    """P- and Q-probing of the run's model against a random-init copy (lmphys.bio_probe)."""
    from lmphys import bio_probe  # on use: probing pulls in optax training code

    setup = loop._setup(config)
    task = setup.task
    documents = bio.biographies(task.people, config.task.world_seed)
    result = bio_probe.probe_run(setup.graphdef, params, setup.model_cfg, task.people, documents,
                                 key=jax.random.key(seed))
    return {"summary": bio_probe.summarize(result), "detail": result}  # probe_run's values are floats

