"""Meshes, shardings and hosts: how one training job spreads over devices.

Every job runs on one mesh with three named axes:

- `models`: K stacked models (trials that share shapes) split over device groups;
- `data`:   the rows of each model's batch split over devices (data parallel);
- `fsdp`:   rows split too, and each parameter and optimizer leaf sharded along one dimension
            (fully sharded data parallel), gathered by XLA where a layer needs it.

Train states carry the K axis first on every leaf, so a leaf's sharding is `P("models", ...)`
plus, under FSDP, `"fsdp"` on its largest dimension that the axis size divides. Batches are
`[K, B, T]` with rows over `("data", "fsdp")`. The axes are `Auto` (GSPMD propagation), so the
model code needs no sharding annotations of its own.

Data is made on device inside the jitted step from (seed, step) where the world allows; with JAX's partitionable
threefry, the random bits of an array do not depend on how it is sharded, so the batch of step s is
the same on 1 device, 8 devices or 8 hosts, and each device (hence each host) computes only its own
rows. Batches made on the host (train/host_data.py) enter the step as `[K, B, T]` arrays placed
with `stacked_rows_sharding`; each host makes only the block of models and rows that its devices
hold (`process_block`).

A job of several processes (`initialize_distributed`: SLURM tasks, TPU hosts, or processes started
by hand) sees one mesh over every process's devices. Values every process has (initial states, keys)
are placed with `put`, values that live on other hosts are read with `fetch`. It leaves the job with
`shutdown_distributed` (registered at exit), which gives the coordinator's RPC service a quiet
moment before it stops.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import time
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from lmphys.errors import ConfigError

AXES = ("models", "data", "fsdp")
BATCH_ROWS = ("data", "fsdp")  # mesh axes the rows of a batch are split over
DISTRIBUTED_MODES = ("auto", "on", "off")
# How long the coordinator waits, after the job's shutdown barrier, before it stops the RPC
# service: time for every other process to end its client (see shutdown_distributed).
SERVICE_QUIET_SECONDS = 1.0


def mesh_shape(parallel: ml_collections.ConfigDict, num_devices: int, num_models: int) -> tuple[int, int, int]:
    """(models, data, fsdp) sizes for a job given `num_devices`: `parallel.data = -1` takes every
    device left; explicit sizes may use fewer devices than there are."""
    models, data, fsdp = parallel.models, parallel.data, parallel.fsdp
    for field, value in (("parallel.models", models), ("parallel.fsdp", fsdp)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{field} = {value!r} is invalid: it must be a positive integer")
    if data == -1:
        if num_devices % (models * fsdp):
            raise ConfigError(
                f"parallel.models x parallel.fsdp = {models * fsdp} is invalid: it must divide the "
                f"{num_devices} devices of this job"
            )
        data = num_devices // (models * fsdp)
    if not isinstance(data, int) or data < 1 or models * data * fsdp > num_devices:
        raise ConfigError(
            f"parallel.data = {parallel.data!r} is invalid: models x data x fsdp must be at most the "
            f"{num_devices} devices of this job (or set data = -1 to use every device left)"
        )
    if num_models % models:
        raise ConfigError(
            f"parallel.models = {models} is invalid: it must divide the {num_models} stacked models of this job"
        )
    return models, data, fsdp


def make_mesh(
    parallel: ml_collections.ConfigDict, num_models: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """The job's ("models", "data", "fsdp") mesh over the first models x data x fsdp of `devices`
    (default: every device)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(parallel, len(devices), num_models)
    used = devices[: shape[0] * shape[1] * shape[2]]
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=used)


def check_batch(mesh: Mesh, batch_size: int) -> None:
    rows = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch_size % rows:
        raise ConfigError(
            f"task.batch_size = {batch_size} is invalid: it must be a multiple of data x fsdp = {rows} "
            "devices, which each take an equal share of the rows"
        )


def _fsdp_dim(shape: tuple[int, ...], fsdp: int) -> int | None:
    """The per-model dimension to shard over `fsdp`: the largest that the axis divides."""
    candidates = [(size, dim) for dim, size in enumerate(shape) if size >= fsdp and size % fsdp == 0]
    return max(candidates)[1] if candidates and fsdp > 1 else None


def leaf_spec(stacked_shape: tuple[int, ...], fsdp: int) -> P:
    """Partition spec of one stacked leaf [K, ...]: K over `models`, one dimension over `fsdp`."""
    per_model = stacked_shape[1:]
    spec: list[Any] = [None] * len(per_model)
    dim = _fsdp_dim(per_model, fsdp)
    if dim is not None:
        spec[dim] = "fsdp"
    return P("models", *spec)


def state_shardings(mesh: Mesh, stacked_state: Any) -> Any:
    """NamedShardings for every leaf of a stacked state (arrays or ShapeDtypeStructs)."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, leaf_spec(tuple(leaf.shape), fsdp)), stacked_state)


def shard_state(mesh: Mesh, stacked_state: Any) -> Any:
    """A stacked state placed on the mesh with `state_shardings`."""
    return put(stacked_state, state_shardings(mesh, stacked_state))


def put(tree: Any, shardings: Any) -> Any:
    """`tree` (the same values on every process) placed with `shardings` (one, or a tree of them).

    On one process this is `jax.device_put`. A sharding that spans several processes cannot take a
    device_put, so each process builds its own shards from its copy of the values; PRNG key arrays
    travel as their raw key data."""
    if not isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(put, tree, shardings)
    if isinstance(tree, jax.sharding.Sharding) or shardings.is_fully_addressable:
        return jax.device_put(tree, shardings)
    return jax.tree.map(lambda leaf: _put_across_processes(leaf, shardings), tree)


def _put_across_processes(leaf: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        data = _put_across_processes(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    values = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def fetch(mesh: Mesh, tree: Any) -> Any:
    """`jax.device_get` of arrays on `mesh` that may live on other processes' devices (metrics of
    models held by another host): gathered everywhere first, then read from this host's copy."""
    if all(leaf.is_fully_addressable or leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(tree)):
        return jax.device_get(tree)
    return jax.device_get(jax.tree.map(lambda leaf: leaf.addressable_data(0), _replicate(mesh)(tree)))


def process_block(sharding: jax.sharding.Sharding, shape: tuple[int, ...],
                  devices: Sequence[jax.Device] | None = None) -> tuple[slice, ...]:
    """The block of a global array of `shape` whose shards this process holds (or `devices`
    hold), one slice per dimension: the models and rows of a host batch that this host must make.
    Raises ConfigError if those shards are not one block."""
    held = set(sharding.addressable_devices if devices is None else devices)
    indices = [index for device, index in sharding.devices_indices_map(shape).items() if device in held]
    block = []
    for dim, size in enumerate(shape):
        spans = [index[dim].indices(size)[:2] for index in indices]
        block.append(slice(min(start for start, _ in spans), max(stop for _, stop in spans)))
    covered = {tuple(index[dim].indices(size)[:2] for dim, size in enumerate(shape)) for index in indices}
    cells = sum(int(np.prod([stop - start for start, stop in spans])) for spans in covered)
    if cells < int(np.prod([piece.stop - piece.start for piece in block])):
        raise ConfigError("the mesh gives a host pieces of the batch that are not one block; "
                          "set parallel.models, data and fsdp so that each host holds whole blocks")
    return tuple(block)


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (task data such as a packed corpus)."""
    return NamedSharding(mesh, P())


def per_model_sharding(mesh: Mesh) -> NamedSharding:
    """For [K] arrays: per-model keys and metrics."""
    return NamedSharding(mesh, P("models"))


def stacked_rows_sharding(mesh: Mesh) -> NamedSharding:
    """For [K, B, ...] arrays made outside the step (host batches): K over `models`, rows over
    the batch axes, as `constrain_rows` splits batches made inside it."""
    return NamedSharding(mesh, P("models", BATCH_ROWS))


def local_copy_of_model(mesh: Mesh, stacked: Any, index: int) -> Any:
    """Model `index` of a stacked, sharded pytree as whole arrays on this host's first device of
    the mesh (for evaluation and summaries). XLA gathers the model's shards over the mesh, which
    works the same for one host and for several."""
    replicated = _gather_model(mesh)(stacked, index)
    local = first_local_device(mesh)
    return jax.tree.map(lambda leaf: jax.device_put(leaf.addressable_data(0), local), replicated)


def first_local_device(mesh: Mesh) -> jax.Device:
    """This host's first device of the mesh: where a job keeps its unsharded arrays."""
    return next(device for device in mesh.devices.flat if device.process_index == jax.process_index())


_GATHERS: dict[Mesh, Any] = {}
_REPLICATES: dict[Mesh, Any] = {}


def _replicate(mesh: Mesh):
    if mesh not in _REPLICATES:
        _REPLICATES[mesh] = jax.jit(lambda tree: tree, out_shardings=NamedSharding(mesh, P()))
    return _REPLICATES[mesh]


def _gather_model(mesh: Mesh):
    if mesh not in _GATHERS:
        everywhere = NamedSharding(mesh, P())
        _GATHERS[mesh] = jax.jit(lambda tree, index: jax.tree.map(lambda leaf: leaf[index], tree),
                                 out_shardings=everywhere)
    return _GATHERS[mesh]


def constrain_rows(tree: Any) -> Any:
    """Split the rows (leading axis) of every array in `tree` over the batch axes of the current
    mesh. Inside `jax.vmap(..., spmd_axis_name="models")` the stacked axis goes over `models`."""
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, P(BATCH_ROWS)), tree)


def wants_distributed(parallel: ml_collections.ConfigDict, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is one of several that form a job (and must call
    `jax.distributed.initialize`): explicit config, a multi-task SLURM step, or a multi-host TPU
    slice. SLURM array tasks run one process each and stay independent."""
    mode = parallel.distributed
    if mode not in DISTRIBUTED_MODES:
        raise ConfigError(f"parallel.distributed = {mode!r} is invalid: it must be one of {', '.join(DISTRIBUTED_MODES)}")
    if mode != "auto":
        return mode == "on"
    if parallel.coordinator_address:
        return True
    if int(environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return True
    hosts = environ.get("TPU_WORKER_HOSTNAMES", "")
    return len([host for host in hosts.split(",") if host]) > 1


def initialize_distributed(parallel: ml_collections.ConfigDict, log=print) -> bool:
    """Join the multi-host job when `wants_distributed` says so; return whether it did. JAX reads
    the coordinator, process count and index from SLURM or the TPU environment unless the config
    names them."""
    if not wants_distributed(parallel):
        return False
    # On the CPU backend the processes' devices talk over TCP through gloo; without it a
    # cross-process collective fails. Accelerators use their own collectives and ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if parallel.coordinator_address:
        kwargs = {
            "coordinator_address": parallel.coordinator_address,
            "num_processes": parallel.num_processes,
            "process_id": parallel.process_id,
        }
    jax.distributed.initialize(**kwargs)
    # Runs before JAX's own exit handler (atexit calls the last registered first), which then
    # finds the job already left.
    atexit.register(shutdown_distributed)
    log(f"joined a {jax.process_count()}-host job as process {jax.process_index()}, "
        f"{jax.local_device_count()} local of {jax.device_count()} devices")
    return True


def shutdown_distributed(quiet_seconds: float = SERVICE_QUIET_SECONDS) -> None:
    """Leave the multi-process job: every process's client passes the job's shutdown barrier, and
    then the coordinator (process 0, which hosts the RPC service) waits `quiet_seconds` before it
    stops the service. JAX's own shutdown stops the service the moment its client is through the
    barrier, while the other processes are still ending theirs (a last heartbeat, the cancelled
    error poll); a call that reaches the gRPC server as it stops can abort the process in the
    server's destructor (`Check failed: queue.Pop() == nullptr` in server.cc), after the run has
    finished and written everything, so a complete job would exit with SIGABRT. Does nothing when
    no job was joined or it was already left."""
    if not jax.distributed.is_initialized():
        return
    from jax._src import distributed as jax_distributed  # the client and the service, one at a time

    state = jax_distributed.global_state
    service = getattr(state, "service", None)
    if service is None:  # not the coordinator (or a JAX whose state is laid out otherwise)
        jax.distributed.shutdown()
        return
    state.service = None  # so that jax.distributed.shutdown ends the client alone
    jax.distributed.shutdown()
    time.sleep(quiet_seconds)
    service.shutdown()


def is_primary() -> bool:
    """Process 0 writes the files that exist once per job (metrics, configs, results)."""
    return jax.process_index() == 0


@dataclasses.dataclass(frozen=True)
class DeviceSlices:
    """Local devices cut into `count` equal groups, one per concurrent job of a sweep."""

    count: int

    def split(self, devices: Sequence[jax.Device] | None = None) -> list[list[jax.Device]]:
        devices = list(jax.local_devices() if devices is None else devices)
        if self.count < 1 or len(devices) % self.count:
            raise ConfigError(
                f"parallel_jobs = {self.count} is invalid: it must divide the {len(devices)} local devices"
            )
        size = len(devices) // self.count
        return [devices[i * size:(i + 1) * size] for i in range(self.count)]

