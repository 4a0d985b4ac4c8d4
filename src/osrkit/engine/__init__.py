"""Training loop, checkpoints, prediction and the train → fit scorer → evaluate pipeline."""
