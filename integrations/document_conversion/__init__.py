"""Policy-aware admission of document-conversion workflows.

:class:`WorkflowAdmission` replaces ``asyncio.Semaphore(max_parallel_workflows)``
in "schedule a workflow, then poll it until it completes" flows: each workflow
holds a slot of its workload class (``expensive`` for ``.pdf .docx .xls .xlsx``),
the slots follow the registry's policy, and a workflow past its execution limit
is terminated through a hook.  See ``docs/document_conversion.md``.
"""

from integrations.document_conversion.context import WorkflowContext
from integrations.document_conversion.records import (
    CONVERSION_EXTENSIONS,
    ActiveWorkflow,
    WorkflowExecutionLimit,
    WorkflowSlot,
    WorkflowStatistics,
)
from integrations.document_conversion.workflows import WorkflowAdmission

__all__ = [
    "CONVERSION_EXTENSIONS",
    "ActiveWorkflow",
    "WorkflowAdmission",
    "WorkflowContext",
    "WorkflowExecutionLimit",
    "WorkflowSlot",
    "WorkflowStatistics",
]
