"""denoiserec: denoising sequential recommendation, faithful to the papers, fast, honest.

Python API (mirrors the ``denoiserec`` command line)::

    import denoiserec
    result = denoiserec.train(model="sasrec", dataset="ml-100k", protocol="recbole",
                              overrides=["epochs=50"])
    print(result.table())
"""

from denoiserec.data import Interactions, load_dataset
from denoiserec.run import RunResult, evaluate_run, train, train_config
from denoiserec.runconfig import RunConfig, load_config

__all__ = [
    "Interactions",
    "RunConfig",
    "RunResult",
    "evaluate_run",
    "load_config",
    "load_dataset",
    "train",
    "train_config",
]
__version__ = "0.1.0"
