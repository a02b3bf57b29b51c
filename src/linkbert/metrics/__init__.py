"""Every score as a plain function of predictions and gold labels (no network, no `evaluate`)."""
