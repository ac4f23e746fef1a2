"""Code generators: each backend prints the derivation with its printer into its templates."""
