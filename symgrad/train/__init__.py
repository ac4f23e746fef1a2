"""Training: data in and parameters out (data.py), the fit loop (fit.py) over a generated module (generated.py),
optimizers as update equations (optim.py), the loss plot (plot.py), the progress bar (progress.py)."""
