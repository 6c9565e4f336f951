"""debias engine: audit image datasets for bias with a DB-VAE and retrain fairer models."""
__version__ = "0.1.0"
