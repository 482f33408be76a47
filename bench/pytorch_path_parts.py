"""Where the PyTorch path (fused kernels off) spends an LSTM layer step: gate products (MKL) vs the cell's elementwise ops.

Run: python bench/pytorch_path_parts.py [N]; with ATEN_CPU_CAPABILITY=avx2 it emulates an AVX2-only CPU's ATen kernels.
The same products through numpy's OpenBLAS (which picks its kernels by instruction set, not CPU vendor) show what
torch's BLAS (MKL) leaves on the table on a CPU it does not tune for: `MKL_VERBOSE=1` prints the code path MKL chose."""
import time, torch, sys
import numpy as np
torch.set_num_threads(2)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_591_000
def t(fn, reps=5):
    fn(); best = 1e9
    for _ in range(reps):
        s = time.perf_counter(); fn(); best = min(best, time.perf_counter() - s)
    return best
B1 = torch.randn(23, N); B2 = torch.randn(41, N); W1 = torch.randn(80, 23); W2 = torch.randn(80, 41)
G = torch.empty(80, N); c = torch.randn(20, N); h = torch.empty(20, N)
B1t = B1.t().contiguous(); G_t = torch.empty(N, 80)
W1n, B1n, W2n, B2n, Gn = (x.numpy() for x in (W1, B1, W2, B2, G))
rows = []
for name, fn, flop in [
    ("mm (80x23)@(23xN)", lambda: torch.mm(W1, B1, out=G), 2 * 80 * 23 * N),
    ("mm (80x41)@(41xN)", lambda: torch.mm(W2, B2, out=G), 2 * 80 * 41 * N),
    ("mm (Nx23)@(23x80) [transposed layout]", lambda: torch.mm(B1t, W1.t(), out=G_t), 2 * 80 * 23 * N),
    ("numpy/OpenBLAS (80x23)@(23xN)", lambda: np.matmul(W1n, B1n, out=Gn), 2 * 80 * 23 * N),
    ("numpy/OpenBLAS (80x41)@(41xN)", lambda: np.matmul(W2n, B2n, out=Gn), 2 * 80 * 41 * N),
    ("sigmoid_ (60xN)", lambda: G[:60].sigmoid_(), 0),
    ("tanh_ (20xN)", lambda: G[60:].tanh_(), 0),
    ("mul+addcmul (20xN)", lambda: torch.mul(G[20:40], c, out=c).addcmul_(G[:20], G[60:]), 0),
    ("tanh+mul (20xN)", lambda: torch.tanh(c, out=h).mul_(G[40:60]), 0),
]:
    s = t(fn)
    rows.append((name, s, flop / s / 1e9 if flop else float('nan')))
big = torch.randn(2048, 2048); sq = t(lambda: big @ big); bign = big.numpy(); sqn = t(lambda: bign @ bign)
print(f"N = {N}, threads 2, ATen capability {torch.backends.cpu.get_cpu_capability()}; square 2048 matmul "
      f"{2*2048**3/sq/1e9:.0f} GFLOP/s (torch, MKL), {2*2048**3/sqn/1e9:.0f} GFLOP/s (numpy, OpenBLAS)")
for name, s, g in rows:
    print(f"  {name:42s} {s*1e3:8.1f} ms  {g:6.1f} GFLOP/s")
