"""A model version's signature inputs, read from its ``MLmodel`` file (MLflow, "MLflow Model
Signatures and Input Examples", https://mlflow.org/docs/latest/ml/model/signatures/): one
artifact download per version, nothing else of the model's files."""

from __future__ import annotations

from typing import Any


def signature_inputs(client: Any, registry_uri: str | None, model: str, version: str) -> list[dict[str, Any]] | None:
    """The column specs (``name``, ``type``) of ``model`` ``version``'s signature inputs; None if
    it has no signature. Errors of the registry or the artifact store are the caller's."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    uri = client.get_model_version_download_uri(model, version)
    path = download_artifacts(artifact_uri=f"{uri.rstrip('/')}/MLmodel", tracking_uri=registry_uri)
    sig = Model.load(path).signature
    if sig is None or sig.inputs is None:
        return None
    return [spec for spec in sig.inputs.to_dict() if spec.get("name")]
