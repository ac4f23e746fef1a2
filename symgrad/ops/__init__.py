"""The ops a model is built from: activations, losses and the SymPy functions they print as."""
