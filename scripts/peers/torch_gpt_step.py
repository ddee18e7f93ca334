"""A peer baseline: one GPT-2-style training step in PyTorch, as a hand-tuned PyTorch user writes it.

Pre-norm blocks (LayerNorm, causal attention through F.scaled_dot_product_attention, GELU MLP),
tied embeddings, no biases, AdamW (fused on CUDA), bf16 autocast and torch.compile on CUDA; fp32
and eager on the CPU unless COMPILE=1. Random tokens, like lmphys's perf rows.

    python torch_gpt_step.py LAYERS WIDTH HEADS SEQ_LEN BATCH VOCAB [STEPS] [MODELS]

MODELS > 1 trains that many independent models one after another inside each timed step (what a
PyTorch user does without vmap). Prints one line: 'torch L/D/H T B V K: N tokens/s ...'.

Its code is the project's shared bench peer (bench/torch_gpt_step.py) unchanged, kept here so
that scripts/bench.py (section peer) never reads outside the repository. Not part of lmphys: it needs
torch, which lmphys never depends on (`pip install torch` to run the peer rows).
"""
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, bias=False)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.norm2 = nn.LayerNorm(width, bias=False)
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class GPT(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, seq_len: int, vocab: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width, bias=False)
        for name, p in self.named_parameters():
            std = 0.02 / math.sqrt(2 * layers) if name.endswith(("out.weight", "down.weight")) else 0.02
            if p.dim() > 1:
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        x = self.tokens(idx) + self.positions(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.norm(x) @ self.tokens.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def main():
    layers, width, heads, seq_len, batch, vocab = map(int, sys.argv[1:7])
    steps = int(sys.argv[7]) if len(sys.argv) > 7 else 20
    num_models = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    models, optimizers = [], []
    for _ in range(num_models):
        model = GPT(layers, width, heads, seq_len, vocab).to(device)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        other = [p for p in model.parameters() if p.dim() < 2]
        optimizers.append(torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                            lr=3e-4, betas=(0.9, 0.98), fused=cuda))
        if cuda or os.environ.get("COMPILE") == "1":
            model = torch.compile(model)
        models.append(model)
    x = torch.randint(0, vocab, (batch, seq_len), device=device)
    y = torch.randint(0, vocab, (batch, seq_len), device=device)

    def step():
        for model, opt in zip(models, optimizers):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cuda):
                loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    for _ in range(3):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    print(f"torch {layers}/{width}/{heads} T={seq_len} B={batch} V={vocab} K={num_models}: "
          f"{num_models * batch * seq_len / dt:,.0f} tokens/s (step {dt * 1e3:.1f} ms, first step {compile_s:.1f} s, "
          f"loss {loss.item():.3f}, torch {torch.__version__}, {device})")


if __name__ == "__main__":
    main()
