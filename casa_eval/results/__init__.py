"""The versioned results document of a casa-eval run."""

from casa_eval.results.schema import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    CodeRevision,
    Environment,
    MetricResult,
    ModelRecord,
    RunConfigRecord,
    RunResults,
    RunStatus,
    TaskRecord,
    load_results,
)

__all__ = ["RESULTS_FILE", "SCHEMA_VERSION", "CodeRevision", "Environment", "MetricResult", "ModelRecord",
           "RunConfigRecord", "RunResults", "RunStatus", "TaskRecord", "load_results"]
