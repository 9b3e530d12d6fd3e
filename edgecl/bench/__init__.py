"""Continual-learning benchmarks: cached latent streams and the strategy comparison."""
