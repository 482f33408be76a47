"""Meta-training seeds as jobs on a Dask cluster: the same files as the serial run, even when a worker dies."""
import os
import signal
import threading
import time

import pandas as pd
import pytest
import torch

from l2l_core.experiments import lstms, settings
from l2l_core.runtime import jobs, process
from l2l_core.tasks.families import QuadraticFamily


def _settings(tmp_path, name, meta_epochs):
    return settings.settings(name, "quadratic", "smoke", meta_seeds=(0, 1), meta_epochs=meta_epochs,
                       results_dir=tmp_path / name)


def _files(folder):
    """Every LSTM's weights and every curve (without its wall-clock column) written into ``folder``."""
    weights = {p.name: torch.load(p, weights_only=False)["state_dict"] for p in sorted(folder.glob("lstm-seed*.pt"))}
    curves = {p.name: pd.read_csv(p).drop(columns="seconds") for p in sorted(folder.glob("history-*.csv"))}
    return weights, curves


def _assert_same_files(a, b):
    (wa, ca), (wb, cb) = _files(a), _files(b)
    assert sorted(wa) == sorted(wb) == ["lstm-seed0.pt", "lstm-seed1.pt"] and sorted(ca) == sorted(cb)
    for name in wa:
        assert all(wa[name][k].equal(wb[name][k]) for k in wa[name]), name
    for name in ca:
        pd.testing.assert_frame_equal(ca[name], cb[name], check_exact=True)


def _run(tmp_path, monkeypatch, name, setting, meta_epochs=2, during=None):
    monkeypatch.setenv(jobs.SCHEDULER_ENV, setting)
    monkeypatch.setenv(jobs.THREADS_ENV, "1")
    s = _settings(tmp_path, name, meta_epochs)
    folder = tmp_path / name
    if during is None:
        lstms.train_seeds(QuadraticFamily(), s, folder, progress=False)
    else:
        worker = threading.Thread(target=lstms.train_seeds, args=(QuadraticFamily(), s, folder), kwargs=dict(progress=False))
        worker.start()
        during(folder)
        worker.join(timeout=600)
    return folder


def test_the_scheduler_setting_is_checked(monkeypatch):
    monkeypatch.setenv(jobs.SCHEDULER_ENV, "dask")
    with pytest.raises(ValueError, match="L2L_SCHEDULER='dask'"):
        jobs.scheduler()
    monkeypatch.setenv(jobs.SCHEDULER_ENV, "tcp://10.0.0.5:8786")
    assert jobs.scheduler() == "tcp://10.0.0.5:8786"
    monkeypatch.setenv(jobs.THREADS_ENV, "0")
    with pytest.raises(ValueError, match="L2L_JOB_THREADS"):
        jobs.job_threads()


def _parent_of_worker():
    """(parent pid, parent's command line, whether the parent has torch's library mapped, whether this worker
    started with every preloaded module imported) of this worker."""
    import sys

    parent = os.getppid()
    with open(f"/proc/{parent}/cmdline", "rb") as cmd, open(f"/proc/{parent}/maps") as maps:
        return (parent, cmd.read().replace(b"\0", b" ").decode(), "libtorch_cpu" in maps.read(),
                all(m in sys.modules for m in process.WORKER_PRELOAD))


def _heavy_imports_of_a_first_job(folder):
    """The heavy modules a fresh worker imports when its first job makes an optimizer and writes a results file."""
    import sys

    from l2l_core.io import write_frame

    before = set(sys.modules)
    torch.optim.Adam([torch.zeros(3, requires_grad=True)], lr=0.1)  # imports torch._dynamo (and Triton) once
    write_frame(pd.DataFrame({"a": [1]}), os.path.join(folder, f"{os.getpid()}.parquet"))
    heavy = ("torch._dynamo", "triton", "pyarrow.lib", "pyarrow._parquet", "pyarrow.pandas_compat")
    return sorted(m for m in set(sys.modules) - before if m.startswith(heavy))


def _triton_mapped():
    """Whether Triton's library is mapped in this worker and in its parent (the forkserver)."""
    def mapped(pid):
        with open(f"/proc/{pid}/maps") as maps:
            return "libtriton" in maps.read()
    return mapped(os.getpid()), mapped(os.getppid())


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc (Linux), forks workers")
def test_local_workers_fork_from_a_server_with_torch_and_see_this_processs_variables(tmp_path, monkeypatch):
    """Workers share torch's pages (forked from a server that imported it, not spawned by this process), yet
    each new cluster sees this process's L2L_* variables as they are now: set, changed, or removed. Neither the
    worker nor the server loads Triton."""
    monkeypatch.setenv("L2L_PROBE", "first")
    try:
        client = jobs.start_local_cluster(1)
        (parent, cmd, has_torch, preloaded), = client.run(_parent_of_worker).values()
        assert parent != os.getpid() and "forkserver" in cmd and has_torch and preloaded
        # what jobs import on first use came with the fork (shared pages), not paid by each worker
        assert list(client.run(_heavy_imports_of_a_first_job, str(tmp_path)).values()) == [[]]
        # ... and Triton, which torch._dynamo would load, is in neither the worker nor the forkserver
        assert list(client.run(_triton_mapped).values()) == [(False, False)]
        assert list(client.run(os.environ.get, "L2L_PROBE").values()) == ["first"]
        monkeypatch.setenv("L2L_PROBE", "second")
        client = jobs.start_local_cluster(1)
        assert list(client.run(os.environ.get, "L2L_PROBE").values()) == ["second"]
        monkeypatch.delenv("L2L_PROBE")
        client = jobs.start_local_cluster(1)
        assert list(client.run(os.environ.get, "L2L_PROBE").values()) in (["",], [None])
    finally:
        jobs.close_clients()


@pytest.mark.slow
def test_seed_jobs_on_two_workers_write_the_serial_runs_files_even_when_a_worker_dies(tmp_path, monkeypatch):
    serial = _run(tmp_path, monkeypatch, "serial", "serial", meta_epochs=6)
    client = jobs.start_local_cluster(2)
    try:
        assert len(client.scheduler_info()["workers"]) == 2
        calm = _run(tmp_path, monkeypatch, "calm", "local", meta_epochs=6)
        killed = []

        def kill_a_busy_worker(folder):
            deadline = time.time() + 300
            while not list(folder.glob("training_state-*.pt")) and time.time() < deadline:
                time.sleep(0.05)  # a seed has finished an epoch: its job is mid-way
            pids = client.run(os.getpid)  # worker address -> its process
            busy = [addr for addr, keys in client.processing().items() if keys]
            for addr in busy[:1]:
                os.kill(pids[addr], signal.SIGKILL)
                killed.append(pids[addr])

        died = _run(tmp_path, monkeypatch, "died", "local", meta_epochs=6, during=kill_a_busy_worker)
        assert killed and killed[0] not in client.run(os.getpid).values()  # that process is gone (and replaced)
        on_workers = _evaluation(serial)
    finally:
        jobs.close_clients()
    _assert_same_files(serial, calm)
    _assert_same_files(serial, died)
    monkeypatch.setenv(jobs.SCHEDULER_ENV, "serial")
    pd.testing.assert_frame_equal(on_workers, _evaluation(serial), check_exact=True)


def _evaluation(folder):
    """compare() of the two trained LSTMs and a baseline, as jobs wherever L2L_SCHEDULER says (1 thread each)."""
    from l2l_core.optimizers.baselines import Baseline
    from l2l_core.optimizers.checkpoint import load_optimizer
    from l2l_core.evaluation.evaluate import compare

    lstms = {k: load_optimizer(folder / f"lstm-seed{k}.pt")[0] for k in (0, 1)}
    return compare({"LSTM": lstms, "Adam": Baseline("adam", 0.1)}, QuadraticFamily(), seeds=(0, 1), n_tasks=3,
                   steps=20)


def _all_files(folder):
    """Every LSTM's weights and every curve (without its wall-clock column) in ``folder``, by file name."""
    weights = {p.name: torch.load(p, weights_only=False)["state_dict"] for p in sorted(folder.glob("*.pt"))
               if not p.name.startswith("training_state")}
    curves = {p.name: pd.read_csv(p).drop(columns="seconds") for p in sorted(folder.glob("history-*.csv"))}
    return weights, curves


@pytest.mark.slow
def test_sets_of_lstms_and_comparisons_run_together_give_what_each_gives_alone(tmp_path, monkeypatch):
    """train_together and compare_together submit several sets' jobs as one batch: each set's files and frames are
    the serial run's, set by set (no job's item or result lands in another set)."""
    from l2l_core.optimizers.baselines import Baseline
    from l2l_core.evaluation.evaluate import Comparison, compare, compare_together

    monkeypatch.setenv(jobs.THREADS_ENV, "1")
    s = _settings(tmp_path, "sets", meta_epochs=3)
    sets = [dict(name="lstm", seeds=(0, 1)), dict(name="other", seeds=(1,), trajectories=8),
            dict(name="third", seeds=(2, 0))]

    def comparisons(trained):
        return [({"LSTM": t.lstms, "Adam": Baseline("adam", 0.1)}, QuadraticFamily(), k) for k, t in enumerate(trained)]

    monkeypatch.setenv(jobs.SCHEDULER_ENV, "serial")
    alone = [lstms.train_seeds(QuadraticFamily(), s, tmp_path / "alone", progress=False, **kw) for kw in sets]
    frames_alone = [compare(o, f, seeds=(k,), n_tasks=2, steps=10) for o, f, k in comparisons(alone)]
    monkeypatch.setenv(jobs.SCHEDULER_ENV, "local")
    try:
        plans = [lstms.plan_seeds(QuadraticFamily(), s, tmp_path / "together", progress=False, **kw) for kw in sets]
        assert [p.todo for p in plans] == [(0, 1), (1,), (2, 0)]
        together = lstms.train_together(plans)
        frames_together = compare_together([Comparison.plan(o, f, seeds=(k,), n_tasks=2, steps=10)
                                            for o, f, k in comparisons(together)])
    finally:
        jobs.close_clients()
    (wa, ca), (wb, cb) = _all_files(tmp_path / "alone"), _all_files(tmp_path / "together")
    assert sorted(wa) == sorted(wb) and len(wa) == 5 and sorted(ca) == sorted(cb)
    for name in wa:
        assert all(wa[name][k].equal(wb[name][k]) for k in wa[name]), name
    for name in ca:
        pd.testing.assert_frame_equal(ca[name], cb[name], check_exact=True)
    for a, b in zip(alone, together):
        assert list(a.lstms) == list(b.lstms)
        pd.testing.assert_frame_equal(a.history.drop(columns="seconds"), b.history.drop(columns="seconds"),
                                      check_exact=True)
    for a, b in zip(frames_alone, frames_together):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_batches_come_back_batch_by_batch_in_the_order_given(monkeypatch):
    monkeypatch.setenv(jobs.SCHEDULER_ENV, "serial")
    assert jobs.run_batches([(str, [3, 1, 2], "a"), (abs, [], "b"), (abs, [-4], "c")]) == [["3", "1", "2"], [], [4]]
    assert jobs.run_batches([]) == []
