"""Where the PyTorch (unfused) LSTM path spends its time on this CPU: sgemm at the LSTM's shapes, sigmoid and tanh,
denormals, and evaluation with the kernels off and on. `python bench/unfused_parts.py [ftz]`; output: bench/unfused_parts.txt."""
import sys, time, torch
from l2l_core.optimizers import fused
from l2l_core.evaluation.evaluate import evaluate
from l2l_core.optimizers.lstm import LSTMOptimizer
from l2l_core.tasks.families import MLPFamily

torch.set_flush_denormal(len(sys.argv) > 1 and sys.argv[1] == "ftz")
print("threads", torch.get_num_threads(), "flush_denormal", len(sys.argv) > 1 and sys.argv[1] == "ftz")
def t(fn, r=20):
    fn(); s = time.perf_counter()
    for _ in range(r): fn()
    return (time.perf_counter() - s) / r
N = 15910  # MNIST 784-20-10 coordinates
for K, M in ((22, 80), (40, 80), (20, 1)):
    a, b = torch.randn(N, K), torch.randn(K, M)
    sec = t(lambda: a @ b)
    print(f"matmul ({N}x{K})@({K}x{M}): {sec*1e3:.3f} ms  {2*N*K*M/sec/1e9:.1f} GFLOP/s")
    g = torch.randn(N, M)
    sec = t(lambda: a.t() @ g)
    print(f"matmul ({K}x{N})@({N}x{M}) [weight grad]: {sec*1e3:.3f} ms  {2*N*K*M/sec/1e9:.1f} GFLOP/s")
big = torch.randn(2048, 2048)
sec = t(lambda: big @ big, 5)
print(f"matmul 2048^3: {2*2048**3/sec/1e9:.1f} GFLOP/s")
x = torch.randn(N, 80)
print(f"sigmoid (N,80): {t(lambda: torch.sigmoid(x))*1e3:.3f} ms; tanh: {t(lambda: torch.tanh(x))*1e3:.3f} ms")
tiny = torch.full((N, 80), 1e-40)
print(f"sigmoid on denormals: {t(lambda: torch.sigmoid(tiny))*1e3:.3f} ms; mul: {t(lambda: tiny * tiny)*1e3:.3f} ms")
fam = MLPFamily(dataset="mnist", hidden=(20,), activation="sigmoid")
lstm = LSTMOptimizer(fam.default_lstm)
fused.set_enabled(False)
s = time.perf_counter(); evaluate(lstm, fam, n_tasks=10, steps=100); print(f"evaluate unfused 10x100: {time.perf_counter()-s:.2f} s")
fused.set_enabled(True)
s = time.perf_counter(); evaluate(lstm, fam, n_tasks=10, steps=100); print(f"evaluate fused 10x100: {time.perf_counter()-s:.2f} s")
