"""botocore's own model of the CodeDeploy API, the reference for request shapes.

The server validates every request against the input shape botocore (and so the AWS
CLI) uses, and names errors from each operation's declared exceptions, instead of
keeping a copy of the API's shapes that could drift from the clients'.
"""

from __future__ import annotations

from botocore.loaders import create_loader  # type: ignore[import-untyped]
from botocore.model import OperationModel, ServiceModel  # type: ignore[import-untyped]

SERVICE = "codedeploy"


def load_codedeploy_model() -> ServiceModel:
    """Read the model from botocore's data (the disk, once at start-up)."""
    loader = create_loader()
    return ServiceModel(loader.load_service_model(SERVICE, "service-2"), service_name=SERVICE)


def error_names(operation: OperationModel) -> frozenset[str]:
    return frozenset(shape.name for shape in operation.error_shapes)
