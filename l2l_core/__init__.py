"""l2l_core: a learned LSTM optimizer (Andrychowicz et al. 2016) and the thesis experiments around it.

Importing the package turns on flush-to-zero for denormal floats (``torch.set_flush_denormal``):
saturated sigmoids and tiny gradients produce denormals that make the CPU 2-3x slower in
meta-training, while values below ~1e-38 never matter for these optimizers.
"""
import torch as _torch

__version__ = "0.1.0"

_torch.set_flush_denormal(True)
