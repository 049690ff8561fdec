"""genray: train, tune and serve generative models on Ray.

The layers live in sub-packages: genray.models (pure PyTorch), genray.cluster (Ray connection,
storage, model registry), genray.trainers (Ray Train), genray.services (Ray Serve), and the
user-facing genray.cli.
"""
__version__ = "0.1.0"
