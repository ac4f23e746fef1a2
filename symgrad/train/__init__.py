"""Training: data loading, the fit loop over a generated module, optimizers as update equations."""
