"""Imported first by the processes ``make reproduce`` starts (the notebooks' kernels, the local Dask workers'
forkserver): applies ``process.make_lean`` there. A module of its own because a forkserver's preload list names
modules to import, not functions to call; ``L2L_PROCESS_TRICKS=0`` makes the import do nothing."""
from l2l_core.runtime.process import make_lean

make_lean()
