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
EvaluationKindName = Literal["shadow", "ab"]

# A job in one of these has finished; it changes no more.
JOB_DONE: tuple[JobStatusName, ...] = ("succeeded", "failed", "cancelled")
