"""The deployments' parameters as the Prefect UI's custom-run form shows them.

Prefect titles each parameter with its Python name and takes its description from the
docstring, unless the parameter's default is a ``pydantic.Field``: then that field's
``description`` and ``json_schema_extra`` (here: a readable ``title``) are used. Bounds
stay in the annotation (``Annotated[int, Field(ge=..., le=...)]``), which Prefect keeps.
No parameter is optional (``X | None``): the form would show a "type None" switch.

A deployed flow **publishes** a stricter signature than its function takes
(:func:`publish`): the schema says ``fleet`` is a ``UseGrant Fleet`` block (the form's
block picker), while the function takes any ``fleet``. Prefect's server accepts any
``{"$ref": ...}`` (and an inline object) for a block parameter; checked by Prefect in the
worker, another kind of block would fail the run with a multi-line validation error.
Taken by the function, it fails the run with one line of ours
(:func:`usegrant_flows.rotation.selection.saved_fleet_name`).

A parameter the flow does not take (``file_path``, ``targets_file``...) is not refused
by the server: Prefect 3.9's parameter schemas allow extra properties. Its worker then
stops the run's process before any of our code runs (state ``Crashed``, "Process exited
with status code: 1"; the worker's log names the unexpected parameter). Nothing is
read, minted or written.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from prefect import Flow
from prefect.utilities.callables import parameter_schema
from pydantic import Field

__all__ = ["BatchSize", "Concurrency", "QueueTimeout", "Spread", "labelled", "publish"]


def publish(flow: Flow[Any, Any], **annotations: Any) -> None:
    """Make ``flow``'s published parameters stricter than its function's.

    Args:
        flow: A flow.
        annotations: Parameter types to publish instead of the function's, by name.
    """
    signature = inspect.signature(flow.fn, eval_str=True)
    parameters = [
        parameter.replace(annotation=annotations.get(parameter.name, parameter.annotation))
        for parameter in signature.parameters.values()
    ]
    # inspect.signature(flow) (what `prefect deploy` and the runner publish) reads this.
    flow.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    flow.parameters = parameter_schema(flow)


def labelled(default: Any, title: str, description: str) -> Any:
    """Return a flow parameter's default with its form title and description.

    Args:
        default: The default value; ``...`` for a required parameter.
        title: The label of the form field, in words.
        description: The help text under it.
    """
    return Field(default, description=description, json_schema_extra={"title": title})


Concurrency = Annotated[int, Field(ge=1, le=1000)]
BatchSize = Annotated[int, Field(ge=1, le=5000)]
Spread = Annotated[float, Field(ge=0, le=86400)]
QueueTimeout = Annotated[float, Field(gt=0, le=86400)]
