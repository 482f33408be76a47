"""The optimizers: the coordinatewise LSTM (reference step, fused CPU kernels, checkpoints, shipped weights),
the drop-in ``LearnedOptimizer`` for any PyTorch model, and the torch.optim baselines by name."""
