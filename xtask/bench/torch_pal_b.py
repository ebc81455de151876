"""Plain PyTorch loop of one PAL training run, the baseline for `cargo xtask bench` (CPU) and the
GPU kit (`--device cuda`).

Same shapes and work as `pal train` on the bench dataset: item/prompt tables gathered per batch,
user softmax weights, AdamW with per-group learning rates. PAL-B (default): item map f and K
prompt maps (Linear-GELU-Linear-GELU-Linear), scaled cosine rewards, Bradley-Terry loss.
PAL-A (`--variant a`): K prototypes in item space, ideal points f(w·P), rewards −‖f(x) − a‖,
logistic loss on the scaled difference. Prints JSON.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(d_in, hidden, d_out, layers):
    widths = [d_in] + [hidden] * (layers - 1) + [d_out]
    mods = []
    for i in range(layers):
        mods.append(nn.Linear(widths[i], widths[i + 1]))
        if i < layers - 1:
            mods.append(nn.GELU())
    return nn.Sequential(*mods)


class PalB(nn.Module):
    def __init__(self, d_item, d_prompt, d, k, layers, users):
        super().__init__()
        self.f = mlp(d_item, d, d, layers)
        self.g = nn.ModuleList(mlp(d_prompt, d, d, layers) for _ in range(k))
        self.theta = nn.Parameter(torch.randn(users, k))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, users, prompts, left, right):
        w = torch.softmax(self.theta[users], dim=1)
        g = torch.stack([gk(prompts) for gk in self.g], dim=1)
        u = (w.unsqueeze(2) * g).sum(1)
        b = left.shape[0]
        fx = self.f(torch.cat([left, right], 0))
        s = self.log_scale.exp().clamp(max=100)
        cos_l = F.cosine_similarity(fx[:b], u, dim=1, eps=1e-8)
        cos_r = F.cosine_similarity(fx[b:], u, dim=1, eps=1e-8)
        return s * (cos_l - cos_r)


class PalA(nn.Module):
    def __init__(self, d_item, d, k, layers, users):
        super().__init__()
        self.f = mlp(d_item, d, d, layers)
        self.g = nn.ParameterList([nn.Parameter(torch.randn(k, d_item) / math.sqrt(d_item))])
        self.theta = nn.Parameter(torch.randn(users, k))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, users, prompts, left, right):
        w = torch.softmax(self.theta[users], dim=1)
        mix = w @ self.g[0]
        b = left.shape[0]
        fx = self.f(torch.cat([left, right, mix], 0))
        a = fx[2 * b:]
        dl = (((fx[:b] - a) ** 2).sum(1) + 1e-12).sqrt()
        dr = (((fx[b:2 * b] - a) ** 2).sum(1) + 1e-12).sqrt()
        s = self.log_scale.exp().clamp(max=100)
        return s * (dr - dl)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--comparisons", type=int, default=100_000)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--prompts", type=int, default=500)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--d-item", type=int, default=384)
    p.add_argument("--d-prompt", type=int, default=384)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=0, help="untimed steps before the clock starts")
    p.add_argument("--variant", choices=["a", "b"], default="b")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--label", default="", help="echoed in the JSON line")
    p.add_argument("--autocast", choices=["none", "bf16"], default="none",
                   help="bf16: forward and loss under torch.autocast(bfloat16), f32 master weights")
    a = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device(a.device)
    items = torch.randn(a.items, a.d_item, device=dev)
    prompts = torch.randn(a.prompts, a.d_prompt, device=dev)
    n = a.comparisons
    users = torch.randint(0, a.users, (n,), device=dev)
    pr = torch.randint(0, a.prompts, (n,), device=dev)
    left = torch.randint(0, a.items, (n,), device=dev)
    right = torch.randint(0, a.items, (n,), device=dev)
    labels = torch.randint(0, 2, (n,), device=dev).float()
    if a.variant == "a":
        model = PalA(a.d_item, a.d, a.k, a.layers, a.users)
    else:
        model = PalB(a.d_item, a.d_prompt, a.d, a.k, a.layers, a.users)
    model = model.to(dev)
    opt = torch.optim.AdamW([
        {"params": model.f.parameters(), "lr": 2e-3, "weight_decay": 0.01},
        {"params": model.g.parameters(), "lr": 2e-3, "weight_decay": 0.01},
        {"params": [model.theta], "lr": 5e-2, "weight_decay": 0.0},
        {"params": [model.log_scale], "lr": 1e-2, "weight_decay": 0.0},
    ])
    def step(idx):
        ctx = prompts[pr[idx]] if a.variant == "b" else None
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            z = model(users[idx], ctx, items[left[idx]], items[right[idx]])
            loss = F.binary_cross_entropy_with_logits(z.float(), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step(torch.randint(0, n, (a.batch,), device=dev))
    sync()
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.randperm(n, device=dev)
        for i in range(0, n, a.batch):
            step(perm[i:i + a.batch])
    sync()
    secs = time.perf_counter() - t0
    print(json.dumps({
        "kind": "torch",
        "label": a.label,
        "device": a.device,
        "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "autocast": a.autocast,
        "seconds": secs,
        "samples_per_second": n * a.epochs / secs,
    }))


if __name__ == "__main__":
    main()
