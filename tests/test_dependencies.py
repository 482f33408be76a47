"""The package as a dependency: the drop-in optimizer needs only the core dependencies (torch, numpy; pyproject.toml),
not the book's (the ``[book]`` extra)."""
import subprocess
import sys
import textwrap

import pytest

# what the [book] extra brings and a project using only LearnedOptimizer should not need
BOOK_ONLY = ("pandas", "pyarrow", "dask", "distributed", "seaborn", "matplotlib")

_SCRIPT = textwrap.dedent("""
    import sys

    BOOK_ONLY = sys.argv[1].split(",")
    if sys.argv[2] == "blocked":  # as in a venv with the core dependencies only: import raises, find_spec gives None
        sys.modules.update(dict.fromkeys(BOOK_ONLY))

    import torch
    from torch import nn
    from l2l_core.optimizers.drop_in import LearnedOptimizer

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    opt = LearnedOptimizer(model.parameters(), pretrained="mnist")
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    loaded = [m for m, module in sys.modules.items() if module is not None and m.partition(".")[0] in BOOK_ONLY]
    print(",".join(sorted(loaded)))
""")


@pytest.mark.parametrize("book", ["installed", "blocked"])
def test_drop_in_optimizer_needs_no_book_dependency(book):
    """Imported, built with the shipped weights and stepped, in a fresh process: none of the book's packages is
    imported when they are installed, and it works when they are not."""
    done = subprocess.run([sys.executable, "-c", _SCRIPT, ",".join(BOOK_ONLY), book], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "", f"imported: {done.stdout.strip()}"
