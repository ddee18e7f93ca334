"""lmphys: the Physics of Language Models experiments as fast, reproducible JAX programs."""
from setuptools import find_packages, setup

setup(
    name="lmphys",
    version="0.1.0",
    description="Synthetic worlds, small transformers and probes for the Physics of Language Models series.",
    packages=find_packages(include=["lmphys", "lmphys.*"]),
    package_data={"lmphys.worlds": ["*/data/*"]},  # each world's shipped tables, lists and their licenses
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "absl-py>=2.1",
        "ml-collections>=1.0",
        "numpy>=1.26",
        "tensorboardX>=2.6",
        "matplotlib>=3.7",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3"]},
)
