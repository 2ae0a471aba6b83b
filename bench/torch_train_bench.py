"""Training throughput of the microlm-8m architecture in PyTorch (Python), the peer for
`microlm-train`'s libtorch loop: same shape, batch, sequence length, AdamW, clipping, fp32 on
the CPU. Random token windows (throughput does not depend on the data). Run with Debian's
python3 (python3-torch), e.g.:
    /usr/bin/python3 bench/torch_train_bench.py --steps 8 --threads 2
and compare with `microlm-train train ... --steps=8` run just before or after it."""
import argparse
import math
import time

import torch
import torch.nn.functional as F


class Llama(torch.nn.Module):
    def __init__(self, vocab, dim, layers, heads, kv_heads, ffn, ctx):
        super().__init__()
        self.h, self.kv, self.hd = heads, kv_heads, dim // heads
        self.emb = torch.nn.Parameter(torch.randn(vocab, dim) * 0.02)
        self.norm = torch.nn.Parameter(torch.ones(dim))
        self.blocks = torch.nn.ModuleList()
        for _ in range(layers):
            b = torch.nn.Module()
            b.n1 = torch.nn.Parameter(torch.ones(dim))
            b.n2 = torch.nn.Parameter(torch.ones(dim))
            b.q = torch.nn.Linear(dim, heads * self.hd, bias=False)
            b.k = torch.nn.Linear(dim, kv_heads * self.hd, bias=False)
            b.v = torch.nn.Linear(dim, kv_heads * self.hd, bias=False)
            b.o = torch.nn.Linear(heads * self.hd, dim, bias=False)
            b.g = torch.nn.Linear(dim, ffn, bias=False)
            b.u = torch.nn.Linear(dim, ffn, bias=False)
            b.d = torch.nn.Linear(ffn, dim, bias=False)
            self.blocks.append(b)
        inv = 10000.0 ** (-torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd)
        ang = torch.arange(ctx, dtype=torch.float64)[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos().float())
        self.register_buffer("sin", ang.sin().float())

    @staticmethod
    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def rope(self, x):  # (B, T, H, hd), adjacent pairs
        T = x.shape[1]
        xp = x.reshape(*x.shape[:-1], -1, 2)
        c, s = self.cos[:T].view(1, T, 1, -1), self.sin[:T].view(1, T, 1, -1)
        x0, x1 = xp[..., 0], xp[..., 1]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).reshape(x.shape)

    def forward(self, ids):
        B, T = ids.shape
        x = F.embedding(ids, self.emb)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        for b in self.blocks:
            h = self.rms(x, b.n1)
            q = self.rope(b.q(h).view(B, T, self.h, self.hd)).transpose(1, 2)
            k = self.rope(b.k(h).view(B, T, self.kv, self.hd)).transpose(1, 2)
            v = b.v(h).view(B, T, self.kv, self.hd).transpose(1, 2)
            k = k.repeat_interleave(self.h // self.kv, 1)
            v = v.repeat_interleave(self.h // self.kv, 1)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            x = x + b.o((att @ v).transpose(1, 2).reshape(B, T, -1))
            h = self.rms(x, b.n2)
            x = x + b.d(F.silu(b.g(h)) * b.u(h))
        return self.rms(x, self.norm) @ self.emb.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    m = Llama(8192, 256, 8, 8, 2, 704, 2048)
    n_params = sum(p.numel() for p in m.parameters())
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = args.batch * args.seq_len
    t0 = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            t0 = time.perf_counter()
        ids = torch.randint(0, 8192, (args.batch, args.seq_len + 1))
        logits = m(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 8192), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    dt = time.perf_counter() - t0
    print(f"pytorch {torch.__version__}: {n_params} parameters, {args.steps} steps of {tokens} tokens "
          f"in {dt:.1f} s: {args.steps * tokens / dt:.0f} tokens/s ({args.threads} threads)")


if __name__ == "__main__":
    main()
