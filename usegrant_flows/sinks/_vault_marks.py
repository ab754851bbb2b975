"""The ownership marks of a Vault KV v2 secret: custom metadata that names us and the target.

A secret the Vault sink creates carries ``custom_metadata`` ``managed-by:
usegrant-flows`` and ``usegrant-target: <target name>``. A secret without them (written
by another tool or by hand), or marked for another target, is not replaced unless the
sink says ``adopt``. ``hvac`` is imported by the caller; nothing here imports it at
module level.
"""

from __future__ import annotations

from typing import Any

from usegrant_flows.sinks.base import TokenMetadata, marks_problem, not_owned, owner_marks

__all__ = ["check_owner", "put_marks"]


def check_owner(
    client: Any, mount_point: str, path: str, metadata: TokenMetadata | None, *, adopt: bool
) -> bool:
    """Refuse a secret without our marks (unless ``adopt``); return whether to mark it.

    Args:
        client: An authenticated ``hvac.Client``.
        mount_point: The KV v2 mount.
        path: The secret's path in the mount.
        metadata: ``target``: the target's name, which the marks must carry.
        adopt: Take a secret that is not ours over.

    Returns:
        True when the secret is new or adopted: the write puts our marks on it.

    Raises:
        NotOwnedError: Naming the secret, what its marks lack and the way out.
    """
    import hvac.exceptions

    try:
        answer = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount_point)
    except hvac.exceptions.InvalidPath:
        return True  # no secret: the write creates it, marked
    problem = marks_problem((answer.get("data") or {}).get("custom_metadata"), metadata)
    if problem is None:
        return False
    if adopt:
        return True
    raise not_owned(f"Vault secret {mount_point}/{path} {problem}")


def put_marks(client: Any, mount_point: str, path: str, metadata: TokenMetadata | None) -> None:
    """Set our custom metadata on the secret, leaving its other metadata settings alone."""
    # hvac's update_metadata would also reset delete_version_after: post the one field.
    client.adapter.post(
        f"/v1/{mount_point}/metadata/{path}", json={"custom_metadata": owner_marks(metadata)}
    )
