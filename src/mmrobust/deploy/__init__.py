"""Deployment: from a trained run to a model in use.

- ``ModelSpec`` (``spec.py``): what every checkpoint stores to be self-contained (``provenance["spec"]``);
- ``load_deployed`` (``loading.py``): model + spec from a checkpoint or run directory, no dataset needed;
- ``predict`` (``predict.py``, ``inputs.py``): predictions on a manifest of files or one sample;
- ``export`` (``export.py``, ``graph.py``): one ONNX / TorchScript graph serving every modality subset.
"""

from mmrobust.deploy.export import export
from mmrobust.deploy.graph import DeployedGraph
from mmrobust.deploy.loading import load_deployed
from mmrobust.deploy.predict import Predictions, predict
from mmrobust.deploy.spec import InputSpec, ModelSpec, job_spec

__all__ = ["DeployedGraph", "InputSpec", "ModelSpec", "Predictions", "export", "job_spec", "load_deployed", "predict"]
