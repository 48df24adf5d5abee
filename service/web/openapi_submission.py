"""The body of ``POST /tasks`` in the OpenAPI document, and each task type's parameters.

One object schema that client generators can model: ``name`` one of the registered task
types, ``args`` an array, ``kwargs`` an object, and the options. What each task type takes
is its own component, ``<Name>Parameters`` (as ``GET /task-types`` gives it): a generated
client gets a model per task type, and a body that does not fit it is a 422 naming the
arguments that are wrong.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from quart_schema.conversion import model_schema

from ..registry import TaskType
from .schemas import SubmitBody

Schema = dict[str, Any]


def submission_components(task_types: list[TaskType], max_delay: float) -> dict[str, Schema]:
    """``Submission`` (one object: a task type's name, its arguments, the options) and, for
    each task type, ``<Name>Parameters``: its parameters, as ``GET /task-types`` gives them."""
    components: dict[str, Schema] = {}
    for task_type in task_types:
        components.update(parameters_components(task_type, set(components)))
    components["Submission"] = submission_schema([t.name for t in task_types], max_delay)
    return components


def submission_schema(names: list[str], max_delay: float) -> Schema:
    """The body of ``POST /tasks``, from :class:`SubmitBody` (so every option it takes is
    documented), with ``name`` one of the registered task types."""
    schema: Schema = model_schema(SubmitBody, schema_mode="validation", preference=None)
    schema.pop("$defs", None)
    schema["title"] = "Submission"
    schema["description"] = (
        "A task to run: a registered task type's name and its arguments, positionally "
        "(args) or by keyword (kwargs), with options. What each type takes is its "
        "`<Name>Parameters` schema (also in GET /task-types); arguments that do not fit "
        "are a 422 that names each one.")
    properties: Schema = schema["properties"]
    if names:
        properties["name"] = {"type": "string", "enum": names,
                              "description": "A registered task type."}
    for option in properties["delay"].get("anyOf", []):
        if option.get("type") == "number":
            option["maximum"] = max_delay
    return _defaults_in_words(schema)


def parameters_component_name(task_name: str) -> str:
    """``add`` -> ``AddParameters``, ``emails.send_one`` -> ``EmailsSendOneParameters``."""
    return "".join(part[:1].upper() + part[1:]
                   for part in re.split(r"[^A-Za-z0-9]+", task_name)) + "Parameters"


def parameters_components(task_type: TaskType, taken: set[str]) -> dict[str, Schema]:
    """The task type's parameters as a component, and the models they refer to (named
    after the type: ``plot.Point``)."""
    schema = task_type.parameters_schema()
    prefix = re.sub(r"[^A-Za-z0-9._-]", "_", task_type.name)
    definitions = schema.pop("$defs", {})
    assert isinstance(definitions, dict)
    components = {f"{prefix}.{name}": _defaults_in_words(_rebase_refs(definition, prefix))
                  for name, definition in definitions.items()}
    name = parameters_component_name(task_type.name)
    suffix = 1
    while name in taken or name in components:  # two names that read the same in CamelCase
        suffix += 1
        name = f"{parameters_component_name(task_type.name)}{suffix}"
    schema["title"] = name  # what generators name the model after
    if not any(p.kind is p.VAR_KEYWORD for p in _parameters(task_type)):
        schema["additionalProperties"] = False  # another keyword is a 422
    schema["description"] = (f"The parameters of the task type `{task_type.name}` by name, "
                             "as GET /task-types gives them.")
    components[name] = _defaults_in_words(_rebase_refs(schema, prefix))
    return components


def _defaults_in_words(schema: Schema) -> Schema:
    """A request body's defaults, said in each property's description instead of as
    ``default``: openapi-typescript (with its default options) types a property that has a
    ``default`` as required, which these optional fields are not. ``null`` goes unsaid."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict) and "default" in prop:
            value = prop.pop("default")
            if value is not None:
                said = prop.get("description", "").rstrip(".")
                prop["description"] = f"{said}. Default: {json.dumps(value)}.".lstrip(". ")
    return schema


def _parameters(task_type: TaskType) -> list[inspect.Parameter]:
    return list(inspect.signature(task_type.fn).parameters.values())


def _rebase_refs(schema: Any, prefix: str) -> Any:
    if isinstance(schema, dict):
        return {k: (f"#/components/schemas/{prefix}.{v.rsplit('/', 1)[1]}"
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                    else _rebase_refs(v, prefix)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase_refs(item, prefix) for item in schema]
    return schema
