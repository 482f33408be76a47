"""The thesis' experiments 1-6: each chapter's task families, the thesis' claims about them (with their source),
and its ``Experiment`` (``Experiment.run`` runs a chapter in one call)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from l2l_core.evaluation.claims import Claim, Part
from l2l_core.tasks.families import QuadraticFamily

from l2l_core.experiments.protocol import Experiment
from l2l_core.experiments.lstms import TrainedLSTMs, train_seeds
from l2l_core.experiments.settings import Settings, mlp_family, setting_label

# Where each claim's wording comes from: the thesis' slides ("What did we notice?") or a markdown cell of the thesis
# notebook (MetaLearning.ipynb of kostagiolasn/MetaLearning-MScThesis, commit 75903cf, cells counted from 0).
SLIDES = "thesis slides, 'What did we notice?'"
NOTEBOOK = "MetaLearning.ipynb (thesis code), cell {}"
WIDE = ("learned optimizers outperform by a wide margin their standard handwritten counterparts when tested on "
        "unseen examples from the same dataset")
# The thesis' own numbers are best-of-epoch means on its validation ("selection") tasks, not held-out means.
SELECTION = "thesis, best-of-epoch validation means on its selection tasks (not held out), summed loss over 100 steps: "


def wide_margin_claims(experiment: str, setting: str | None, thesis: str) -> list[Claim]:
    """The slides' first conclusion as two claims: the sign (beats every baseline) and the effect size."""
    return [Claim(experiment, "The LSTM beats all four tuned baselines on unseen tasks of its training family.",
                  thesis, f"{SLIDES}: '{WIDE}'", (Part("better"),), setting=setting),
            Claim(experiment, "... by a wide margin (summed loss at least 10% below every baseline's).",
                  thesis, f"{SLIDES}: '{WIDE}'", (Part("wide_margin"),), setting=setting)]


def quadratic_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 1's task family (10-d quadratics) and the thesis' claims about it."""
    claims = wide_margin_claims("01 quadratics", None, SELECTION + "LSTM 49.6, Adam 98.8 (lr 0.1), NAG 107.5 (0.01), "
                                "RMSprop 133.5 (0.03), SGD 206.5 (0.01) (notebook cells 12, 16)")
    return [QuadraticFamily(device=s.device)], claims


def quadratic_experiment(s: Settings) -> Experiment:
    """Experiment 1, ready to run step by step: the 10-d quadratic family and the thesis' claims about it."""
    return Experiment(s, *quadratic_setup(s))


# The arms beside experiment 2's main one (its PyTorch-init contrast, the errata chapter's arms) are meta-trained from
# the main arm's first five seeds: at least five for a stated verdict (the fidelity issue; with three, the contrast's
# "wide margin" verdict flipped between two runs differing only in float rounding: Satterthwaite's df from three seeds
# is about two, whose t tails are too heavy for a p-value to clear Holm's threshold reliably). The main arm may have
# more (the seed rule asks for them); an errata arm pairs with the main arm's LSTMs of the same seeds.
SIDE_ARM_META_SEEDS = 5
THESIS_MNIST_LSTM = 50.9  # the summed loss of the thesis' selected MNIST LSTM (MetaLearning.ipynb cells 24, 25)
MNIST_THESIS = SELECTION + (f"LSTM {THESIS_MNIST_LSTM}, Adam 86.2 (lr 0.03), RMSprop 101.4 (0.01), NAG 115.9 (1.0), "
                            "SGD 195.1 (1.0) (notebook cells 24, 25)")


def mnist_setup(s: Settings, hidden=(20,), activation: str = "sigmoid") -> tuple[list, list[Claim]]:
    """Experiment 2's task families and claims: the thesis' initialisation, and PyTorch's beside it (``hidden`` and
    ``activation``: the thesis' MLP unless changed)."""
    families = [mlp_family(s, hidden=hidden, activation=activation, init=init) for init in ("thesis", "pytorch")]
    claims = []
    for family in families:  # PyTorch's initialisation is the book's contrast, not a thesis claim: its own Holm family
        kind = "thesis" if family.init == "thesis" else "contrast"
        claims += [replace(c, family=kind) for c in wide_margin_claims("02 MNIST", setting_label(family), MNIST_THESIS)]
        if s.steps >= 200:
            claims.append(Claim("02 MNIST", "The LSTM is still ahead at step 200, twice its training horizon.",
                                "the paper's MNIST figure shows the LSTM ahead up to step 200",
                                "Andrychowicz et al. (2016), MNIST figure", (Part("better"),), metric="loss@200",
                                setting=setting_label(family), family=kind))
    return families, claims


def mnist_experiment(s: Settings, hidden=(20,), activation: str = "sigmoid") -> Experiment:
    """Experiment 2, ready to run step by step: its two task families (the thesis' initialisation, PyTorch's beside
    it with the first ``SIDE_ARM_META_SEEDS`` meta-training seeds) and the thesis' claims about them. ``hidden``/``activation``
    change the MLP (chapters 03-06 then refuse to read these LSTMs: they were trained on another network)."""
    families, claims = mnist_setup(s, tuple(hidden), activation)
    contrast = {families[1]: s.meta_seeds[:SIDE_ARM_META_SEEDS]}
    return Experiment(s, families, claims, snapshot_budgets=mnist_snapshots(s), seeds_of=contrast)


def mnist_snapshots(s: Settings) -> tuple:
    """The budgets below the main LSTMs' own at which they also keep the LSTM a shorter run selects."""
    return tuple(b for b in s.snapshot_budgets if b < s.trajectories)


def lstms_at_budget(trained: "TrainedLSTMs", s: Settings, trajectories: int) -> dict:
    """The main LSTMs (meta_seed -> LSTM) that a run of ``trajectories`` selects: a snapshot, or the LSTMs themselves."""
    if trajectories == s.trajectories:
        return trained.lstms
    if trajectories not in trained.at_budget:
        raise ValueError(f"trajectories={trajectories} has no snapshot; allowed: {sorted(trained.at_budget)} or "
                         f"the LSTMs' own budget {s.trajectories} (profile snapshot_budgets)")
    return trained.at_budget[trajectories]


def mnist_lstms(s: Settings, progress: bool = True) -> "TrainedLSTMs":
    """Experiment 2's LSTMs (all meta-training seeds) from the same results tree, read-only: an error naming
    chapter 02 if they are missing or were trained with other settings."""
    folder = Path(s.results_dir).parent / "02_mnist"
    owner = None if Path(s.results_dir).resolve() == folder.resolve() else "02_mnist"  # 02 itself trains them
    return train_seeds(mlp_family(s), s, folder, "lstm", progress=progress, snapshot_budgets=mnist_snapshots(s),
                       owner=owner)


def transfer_experiment(s: Settings, families: list, claims: list) -> Experiment:
    """Experiment 2's LSTMs on other ``families``, ready to run step by step: ``meta_train`` reads chapter 02's
    LSTMs (an error naming it if they are missing or were trained with other settings), never trains them."""
    return Experiment(s, families, claims, train_family=mlp_family(s), lstm_dir=Path(s.results_dir).parent / "02_mnist",
                      snapshot_budgets=mnist_snapshots(s), lstm_owner="02_mnist")


def architectures_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 3's task families and claims."""
    wide, deep = mlp_family(s, hidden=(40,)), mlp_family(s, hidden=(20, 20))
    general = ("learned optimizers are capable of generalizing to different models as long as heavy changes to the "
               "learning dynamics aren't made")
    claims = [
        Claim("03 architectures", "The MNIST-trained LSTM still beats every baseline with 40 hidden units.",
              "'our learned optimizer still performs better than standard optimizers even if we alter the number of "
              "neurons'", f"{NOTEBOOK.format(33)}; {SLIDES}: '{general}'", (Part("better"),),
              setting=setting_label(wide)),
        Claim("03 architectures", "The MNIST-trained LSTM still beats every baseline with two hidden layers.",
              "'our learned optimizer performs better than standard optimizers even if we add another hidden layer'",
              f"{NOTEBOOK.format(31)}; {SLIDES}: '{general}'", (Part("better"),), setting=setting_label(deep)),
    ]
    return [wide, deep], claims


def relu_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 4's task family and claim."""
    relu = mlp_family(s, activation="relu")
    claims = [Claim("04 ReLU", "With ReLU, NAG beats the MNIST-trained LSTM, but the LSTM still beats SGD, RMSprop "
                    "and Adam.", "'SGD with Momentum proves to perform better than our learned optimizer, however it "
                    "still manages to surpass the rest of the hand-designed optimization algorithms'",
                    NOTEBOOK.format(35), (Part("worse", ("NAG",)), Part("better", ("SGD", "RMSprop", "Adam"))),
                    setting=setting_label(relu))]
    return [relu], claims


def mnist_like_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 5's task families and claims."""
    fashion, letters = mlp_family(s, dataset="fashion_mnist"), mlp_family(s, dataset="emnist_letters")
    transfer_text = ("learned optimizers show a remarkable degree of knowledge transfer between optimization tasks "
                     "stemming from the same family")
    claims = [
        Claim("05 MNIST-like", "Transfer within the MNIST family: the LSTM beats all baselines on Fashion-MNIST.",
              "the slides' conclusion; the notebook (cell 44) has the figure but no sentence",
              f"{SLIDES}: '{transfer_text}'", (Part("better"),), setting=setting_label(fashion)),
        Claim("05 MNIST-like", "Transfer within the MNIST family: the LSTM beats all baselines on EMNIST Letters.",
              "the slides' conclusion; the notebook (cell 53) has the figure but no sentence",
              f"{SLIDES}: '{transfer_text}'", (Part("better"),), setting=setting_label(letters)),
    ]
    return [fashion, letters], claims


def cifar_svhn_setup(s: Settings) -> tuple[list, list[Claim]]:
    """Experiment 6's task families and claims."""
    cifar, svhn = mlp_family(s, dataset="cifar10"), mlp_family(s, dataset="svhn")
    outside = ("learned optimizers don't exhibit much generalization capabilities when applied to tasks outside of "
               "their training regime")
    claims = [
        Claim("06 CIFAR-10 / SVHN", "On CIFAR-10, SGD and NAG do better than the LSTM, and the differences are "
              "negligible (within 5%).", "'Although SGD and SGD with Momentum perform better than our learned "
              "optimizer, the difference in terms of performance is negligible'", NOTEBOOK.format(41),
              (Part("worse", ("SGD", "NAG")), Part("negligible", ("SGD", "NAG"))), setting=setting_label(cifar)),
        Claim("06 CIFAR-10 / SVHN", "Transfer fails on unrelated data: no advantage (over 5%) for the LSTM on CIFAR-10.",
              "the slides' conclusion", f"{SLIDES}: '{outside}'", (Part("no_advantage"),),
              setting=setting_label(cifar)),
        Claim("06 CIFAR-10 / SVHN", "Transfer fails on unrelated data: no advantage (over 5%) for the LSTM on SVHN.",
              "the slides' conclusion; the notebook (cell 67) has the figure but no sentence", f"{SLIDES}: '{outside}'",
              (Part("no_advantage"),), setting=setting_label(svhn)),
    ]
    return [cifar, svhn], claims
