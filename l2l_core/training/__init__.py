"""Meta-training: the LSTM learns to optimise by gradient descent through unrolled optimisation trajectories."""
