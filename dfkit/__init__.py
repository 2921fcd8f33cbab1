"""dfkit: DeepFake datasets -> one quality-measured face-crop corpus, and attribution models trained on it."""

__version__ = "0.1.0"
