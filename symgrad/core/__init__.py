"""The symbolic core: forward programs, their chain-rule derivation, initial values."""
