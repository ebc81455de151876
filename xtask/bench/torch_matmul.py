"""PyTorch's square product on the CPU, the other library in `cargo xtask bench --matrix`'s peak:
the best of five n × n products (default 2048) in float32 and in bfloat16. Prints JSON."""
import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2048)
    a = p.parse_args()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "n": a.n}
    for name, dtype in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
        x = torch.randn(a.n, a.n).to(dtype)
        y = torch.randn(a.n, a.n).to(dtype)
        x @ y
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            x @ y
            best = min(best, time.perf_counter() - t)
        out[f"{name}_gflops"] = 2 * a.n ** 3 / best / 1e9
    print(json.dumps(out))


if __name__ == "__main__":
    main()
