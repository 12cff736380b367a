"""The vocabularies the API speaks, written once: stages, frameworks, roles and statuses.

Plain ``Literal`` aliases, so that the API's parameters, the bodies, the protocols and
the client all refuse the same values (and OpenAPI publishes them as enums).
"""

from __future__ import annotations

from typing import Literal

StageName = Literal["development", "staging", "production", "archived"]
FrameworkName = Literal["sklearn", "pytorch", "onnx", "tensorflow"]
# The frameworks a file upload accepts (TensorFlow models are registered from runs only).
UploadFrameworkName = Literal["sklearn", "onnx", "pytorch"]
RoleName = Literal["viewer", "editor", "approver", "admin"]
RunStatusName = Literal["FINISHED", "FAILED", "KILLED"]
JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ApprovalStatusName = Literal["pending", "approved", "rejected", "applied"]
DeliveryStateName = Literal["pending", "delivered", "dead", "cancelled"]
TrafficModeName = Literal["off", "shadow", "ab"]
# What scores a version: onnxruntime (an ONNX version, or an sklearn classifier's checked
# ONNX twin), its MLflow pyfunc in the service, or its pyfunc in the tenant's sandbox.
ServingRuntimeName = Literal["onnxruntime", "pyfunc", "sandbox"]
TwinStatusName = Literal["passed", "failed", "skipped"]
EvaluationKindName = Literal["shadow", "ab"]

# A job in one of these has finished; it changes no more.
JOB_DONE: tuple[JobStatusName, ...] = ("succeeded", "failed", "cancelled")
