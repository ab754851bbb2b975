"""Shapes of AWS names checked before any request (no SDK, no Prefect import).

Example:
    >>> check_role_arn("arn:aws:iam::123456789012:role/ci")
    'arn:aws:iam::123456789012:role/ci'
"""

from __future__ import annotations

import re

from usegrant_flows.api.errors import ConfigurationError

__all__ = ["REGION", "ROLE_ARN", "check_role_arn"]

#: An IAM role ARN in any partition: ``arn:aws:iam::<12-digit account>:role/<path/name>``.
ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
#: An AWS region name such as ``eu-west-1`` or ``us-gov-west-1``.
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")


def check_role_arn(value: object, name: str = "role_arn") -> str:
    """Return ``value`` if it is an IAM role ARN.

    Args:
        value: The ARN to check.
        name: The argument's name, for the message.

    Raises:
        ConfigurationError: Naming the argument and the expected form.
    """
    if not isinstance(value, str) or not ROLE_ARN.match(value):
        raise ConfigurationError(
            f"{name} must be an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>"
        )
    return value
