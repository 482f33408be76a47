"""l2l_core: a learned LSTM optimizer (Andrychowicz et al. 2016) and the thesis experiments around it."""
__version__ = "0.1.0"
