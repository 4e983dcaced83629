"""`flow45 schema`: JSON Schema of every message and of each function's inputs and output."""

from __future__ import annotations

from flow45.config import task_signature
from flow45.messages import message_schemas
from flow45.store import list_workflows
from flow45.store.deploy import find_workflow
from flow45.models import WorkflowVersion
from flow45.store.specs import version_spec


def full_schema(team: str | None = None) -> dict:
    functions: dict[str, dict] = {}
    for view in list_workflows(team):
        workflow = find_workflow(view.team, view.name)
        row = WorkflowVersion.get((WorkflowVersion.workflow == workflow) & (WorkflowVersion.version == view.version))
        spec = version_spec(row.id)
        for task in spec.workflow.tasks.values():
            key = f"{view.team}.{task.function}"
            if key in functions:
                continue
            signature = task_signature(spec.workflow, task)
            functions[key] = {
                "team": view.team,
                "function": task.function,
                "inputs": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        param: {"anyOf": [spec.types.json_schema(type_name), {"type": "null"}]}
                        for param, type_name in signature.inputs
                    },
                },
                "output": spec.types.json_schema(signature.output),
            }
    return {
        "messages": message_schemas(),
        "functions": functions,
    }
