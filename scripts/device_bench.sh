#!/usr/bin/env bash
# Every accelerator figure of the README's benchmark table in one run of a few minutes:
#
#     bash scripts/device_bench.sh | tee bench_gpu.md
#
# 1. the performance targets' shapes with the best settings (lmphys/perf.py), KV-cache generation
#    and the CFG sampler and parser on the device;
# 2. one setting changed at a time (XLA attention, unrolled layers, float32) on two shapes;
# 3. each world's data path at paper scale (CFG on device, biographies on device, iGSM from
#    worker processes) against the same step on a ready batch;
# 4. lmphys beside the PyTorch peer (scripts/peers/torch_gpt_step.py: bf16 autocast, torch.compile,
#    fused AdamW) on the same card, the targets' shapes with learned positions, and their ratio.
# On a machine without network, a .whl folder of the project's pure-Python dependencies
# (ml-collections, tensorboardX, ...) in the repository root is installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lmphys_site .whl/*.whl
  export PYTHONPATH="/tmp/lmphys_site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
date -u +"%Y-%m-%d %H:%M UTC"
python3 scripts/bench.py --sections=perf,generate,cfg --repeats=5
python3 scripts/bench.py --sections=perf --perf_rows=12/768,4/256 --perf_levers=xla_attention,unrolled,float32 --repeats=3
python3 scripts/bench.py --sections=data --repeats=5
python3 scripts/bench.py --sections=peer --peer_steps=20
