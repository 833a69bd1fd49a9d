"""The records stages pass to each other: RunConfig in (one frozen record per concern, composed
into sections), RunResult out. Torch-free, so the command line can build its options from them
without importing torch (docs/architecture.md, "Records and registries")."""

from sizeup.config.check import CheckSpec
from sizeup.config.data import DataSpec
from sizeup.config.fields import FieldInfo, Record, load_mapping, parse, read_document, spec
from sizeup.config.model import ModelSpec
from sizeup.config.optimizer import OptimSpec
from sizeup.config.parametrization import ParamSpec
from sizeup.config.result import RunResult, json_safe
from sizeup.config.run import MonitorSpec, RunSpec
from sizeup.config.run_config import FIELDS, SECTIONS, RunConfig, field_for, is_field
from sizeup.config.schedule import ScheduleSpec

__all__ = [
    "FIELDS",
    "SECTIONS",
    "CheckSpec",
    "DataSpec",
    "FieldInfo",
    "ModelSpec",
    "MonitorSpec",
    "OptimSpec",
    "ParamSpec",
    "Record",
    "RunConfig",
    "RunResult",
    "RunSpec",
    "ScheduleSpec",
    "field_for",
    "is_field",
    "json_safe",
    "load_mapping",
    "parse",
    "read_document",
    "spec",
]
