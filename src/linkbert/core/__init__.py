"""What every task shares: arguments, data checks, the training engine, distributed set-up, result files."""
