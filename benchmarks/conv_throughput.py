"""Convolution throughput of Jittor on this machine (GFLOP/s), as JSON.

Shapes are ResNet-50 convolutions at an 800x1088 input (batch 1). The same run
times a large float32 matmul in Jittor and in numpy (BLAS) as a reference for
what the CPU can do, and PyTorch's conv when torch is importable, so ratios
come from one run on one machine.

    python benchmarks/conv_throughput.py [--repeat 5] [--threads N]
"""
import argparse
import json
import os
import time

# (name, C_in, C_out, kernel, stride, H_in, W_in) -- ResNet-50 at 800x1088, batch 1
SHAPES = [
    ("stem_7x7_s2", 3, 64, 7, 2, 800, 1088),
    ("layer1_3x3", 64, 64, 3, 1, 200, 272),
    ("layer1_1x1_expand", 64, 256, 1, 1, 200, 272),
    ("layer2_3x3", 128, 128, 3, 1, 100, 136),
    ("layer3_3x3", 256, 256, 3, 1, 50, 68),
    ("layer3_1x1_reduce", 1024, 256, 1, 1, 50, 68),
    ("layer4_3x3", 512, 512, 3, 1, 25, 34),
]


def conv_gflop(cin, cout, k, stride, h, w):
    ho, wo = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
    return 2.0 * cin * cout * k * k * ho * wo / 1e9


def best_time(fn, repeat):
    fn()  # warm-up (compiles on first use)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS (default: as set / all cores)")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import unidetector  # noqa: F401  (bootstrap before jittor)
    import jittor as jt
    from jittor import nn
    from unidetector.commands.doctor import collect

    env = collect()
    result = {"benchmark": "conv_throughput", "jittor_version": env["jittor_version"], "onednn": env["onednn"],
              "cuda": env["cuda"], "threads": env["threads"], "repeat": args.repeat, "convs": []}

    try:
        import torch
        torch.set_num_threads(env["threads"])
    except ImportError:
        torch = None

    for name, cin, cout, k, s, h, w in SHAPES:
        gflop = conv_gflop(cin, cout, k, s, h, w)
        conv = nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False)
        x = jt.randn(1, cin, h, w)

        def run_jt():
            conv(x).sync()
            jt.sync_all(True)

        t = best_time(run_jt, args.repeat)
        row = {"name": name, "shape": [cin, cout, k, s, h, w], "gflop": round(gflop, 3),
               "jittor_s": round(t, 5), "jittor_gflops": round(gflop / t, 1)}
        if torch is not None:
            tconv = torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False)
            tx = torch.randn(1, cin, h, w)
            with torch.no_grad():
                tt = best_time(lambda: tconv(tx), args.repeat)
            row.update(torch_s=round(tt, 5), torch_gflops=round(gflop / tt, 1), jittor_speedup_vs_torch=round(tt / t, 2))
        result["convs"].append(row)

    n = 2048
    a, b = jt.randn(n, n), jt.randn(n, n)
    t = best_time(lambda: jt.matmul(a, b).sync(), args.repeat)
    an, bn = np.random.randn(n, n).astype(np.float32), np.random.randn(n, n).astype(np.float32)
    tn = best_time(lambda: an @ bn, args.repeat)
    mm = 2.0 * n ** 3 / 1e9
    result["matmul_2048"] = {"jittor_gflops": round(mm / t, 1), "numpy_blas_gflops": round(mm / tn, 1)}
    total_flop = sum(r["gflop"] for r in result["convs"])
    total_t = sum(r["jittor_s"] for r in result["convs"])
    result["conv_gflops_overall"] = round(total_flop / total_t, 1)
    result["conv_vs_blas_matmul"] = round(result["conv_gflops_overall"] / result["matmul_2048"]["numpy_blas_gflops"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
