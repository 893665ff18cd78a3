"""Shared library of the NNI compression trial suite: data, models, training, compression, metrics."""
