"""Evaluation: running optimizers on held-out tasks, tuning the baselines' rates, paired statistics over
meta-training seeds and tasks, and the check of each thesis claim."""
