"""The default main job: a small rotary GPT learns a small layered grammar on CPU in minutes.

Run: python scripts/train.py            (this file is the built-in default)
     python scripts/train.py --config=configs/default.py --config.train.steps=500
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # model init, dropout and evaluation sampling
    config.data_seed = -1  # the training data stream; -1: derived from seed
    config.workdir = "runs/default"

    config.task = ml_collections.ConfigDict()
    config.task.name = "cfg"
    config.task.grammar = "cfg_small"  # a shipped name (cfg3b, cfg3f, ...) or a path to a .json table
    config.task.objective = "lm"  # lm (causal decoder) or mlm (BERT-style encoder)
    config.task.batch_size = 32
    config.task.seq_len = 64
    config.task.eval_samples = 256  # generations from BOS (and completions) per evaluation
    config.task.eval_prefix_len = 8  # "cut" prefix length for the completion accuracy (50 in Part 1)
    config.task.temperature = 1.0
    config.task.eval_kl_strings = 64  # held-out documents for the KL to the true next-token law
    config.task.corrupt_fraction = 0.0  # share of training strings perturbed (robustness; ~0.1 in Part 1)
    config.task.corrupt_rate = 0.1  # per-token replacement rate of perturbed strings and corrupted prefixes

    config.model = ml_collections.ConfigDict()
    config.model.kind = "gpt"  # gpt (causal, LM head) or bert (bidirectional, MLM head)
    config.model.num_layers = 4
    config.model.num_heads = 4
    config.model.width = 128
    config.model.mlp_ratio = 4
    config.model.max_len = 64
    config.model.dropout = 0.0
    config.model.tie_embeddings = True
    config.model.dtype = "auto"  # auto: bfloat16 on accelerators, float32 on CPU; params stay fp32
    config.model.position = "rope"  # absolute rope relative pos uniform none
    config.model.rope_fraction = 1.0  # share of each head's dims that rotate (1/4 in Part 3.1)
    config.model.rope_base = 10000.0
    config.model.relative_max_distance = 32  # relative: distances are clipped to this
    config.model.scan_layers = True  # one scanned block: compile time independent of depth
    config.model.attention_impl = "auto"  # auto: XLA; cudnn: fused kernel on NVIDIA GPUs (bf16)
    config.model.remat = False  # recompute blocks in the backward pass: ~L x less activation memory
    # Part 4.1's block options (docs/part4-architecture.md); these defaults are the GPT-2-style block.
    config.model.canon = ""  # Canon layers: letters of ABCD (A/C after the norms, B on q|k|v, D in the MLP)
    config.model.norm = "layernorm"  # layernorm rmsnorm
    config.model.mlp = "gelu"  # gelu (mlp_ratio*D hidden) swiglu (gated, 2/3 of that hidden: same size)
    config.model.qk_norm = False  # RMSNorm over the whole query and key vectors before RoPE
    config.model.bias = True  # biases in the linear layers and LayerNorms

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 3e-3
    config.optim.b1 = 0.9
    config.optim.b2 = 0.98
    config.optim.eps = 1e-6
    config.optim.weight_decay = 0.1
    config.optim.warmup_steps = 100
    config.optim.schedule = "cosine"  # cosine linear constant
    config.optim.final_lr_fraction = 0.1  # the schedule ends at this share of the peak rate
    config.optim.grad_clip = 1.0  # global norm; 0 turns clipping off

    config.parallel = ml_collections.ConfigDict()
    config.parallel.models = 1  # device groups that stacked models are split over
    config.parallel.data = -1  # devices each model's batch rows are split over; -1: the rest
    config.parallel.fsdp = 1  # devices that rows are split over and parameters sharded across
    config.parallel.distributed = "auto"  # join a multi-host job: auto (SLURM / TPU env), on, off
    config.parallel.coordinator_address = ""  # host:port of process 0, to set the job up by hand
    config.parallel.num_processes = 1  # with coordinator_address: the job's process count
    config.parallel.process_id = 0  # with coordinator_address: this process's index

    config.init_from = ""  # workdir of a trained run: start from its latest parameters (fine-tuning)
    config.lora = ml_collections.ConfigDict()
    config.lora.embedding_rank = 0  # > 0 (with init_from): train only low-rank updates (lmphys/train/lora.py)
    config.lora.attention_rank = 0  # rank of the query and value updates

    config.train = ml_collections.ConfigDict()
    config.train.steps = 1200
    config.train.log_every_seconds = 10.0
    config.train.eval_every = 600
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 2
    config.train.save_timeout_seconds = 600.0  # a checkpoint save unfinished after this long stops the run (hung disk)
    return config
