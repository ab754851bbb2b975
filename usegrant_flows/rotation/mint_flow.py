"""Mint one UseGrant token now and write it where you say: for ad-hoc runs from the UI."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from prefect import State, flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Failed
from pydantic import Field

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.api.models import MAX_EXPIRES_IN
from usegrant_flows.rotation.fleet import BlockSinkSpec, RotationTarget, SinkSpec
from usegrant_flows.rotation.policy import RotationAction, RotationResult
from usegrant_flows.rotation.tasks import rotate_fleet
from usegrant_flows.sinks.file import TokenFileFormat
from usegrant_flows.sinks.registry import sink_spec
from usegrant_flows.sinks.webhook import WebhookTokenSink

#: Key of the markdown artifact each run creates.
ARTIFACT_KEY = "usegrant-mint-token"


@flow(name="mint-token", persist_result=False, log_prints=False)
async def mint_token(
    provider_id: UUID,
    client_id: UUID,
    expires_in: Annotated[int, Field(ge=1, le=MAX_EXPIRES_IN)] = 3600,
    use_jwt_type: bool = False,
    audience_as_array: bool = False,
    force_default_domain: bool = False,
    credentials_block: str | None = None,
    file_path: str | None = None,
    file_format: TokenFileFormat = "raw",
    secret_block_name: str | None = None,
    webhook_block_name: str | None = None,
) -> RotationResult | State:
    """Mint a token for one client and write it to the sinks given (at least one).

    The run fails with a one-line reason (bad key, unknown client, rate limit...) when
    the token did not reach every sink; what the sinks held before stays in place.

    Args:
        provider_id: UseGrant provider id (UUID).
        client_id: UseGrant client id (UUID).
        expires_in: Token lifetime in seconds, 1..172800 (48 hours).
        use_jwt_type: JWT header typ "jwt" instead of "at+jwt".
        audience_as_array: The aud claim is an array.
        force_default_domain: The issuer is the provider's default domain, not its custom one.
        credentials_block: Name of the UseGrant Credentials block; empty: the worker's
            USEGRANT_API_KEY / USEGRANT_BASE_URL settings.
        file_path: Write the token to this file on the worker (mode 0600).
        file_format: Layout of that file: raw JWT, json or dotenv.
        secret_block_name: Write the token to this Prefect Secret block (created or overwritten).
        webhook_block_name: POST the token with this saved UseGrant Webhook Token Sink block.
    """
    logger = get_run_logger()
    sinks: list[SinkSpec] = []
    try:
        if file_path:
            sinks.append(sink_spec("file", path=file_path, format=file_format))
        if secret_block_name:
            sinks.append(sink_spec("secret-block", secret_block_name=secret_block_name))
        if webhook_block_name:
            slug = WebhookTokenSink.get_block_type_slug()
            sinks.append(BlockSinkSpec(block=f"{slug}/{webhook_block_name}"))
        if not sinks:
            raise ConfigurationError(
                "no sink: give file_path, secret_block_name or webhook_block_name"
            )
        target = RotationTarget(
            name=f"mint-token/{provider_id}/{client_id}",
            provider_id=provider_id,
            client_id=client_id,
            expires_in=expires_in,
            use_jwt_type=use_jwt_type,
            audience_as_array=audience_as_array,
            force_default_domain=force_default_domain,
            credentials=credentials_block or None,
            sinks=sinks,
        )
        [result] = await rotate_fleet([target], concurrency=1, force=True)
    except ConfigurationError as exc:
        logger.error("%s", exc)
        await acreate_markdown_artifact(
            markdown=f"### UseGrant token for client `{client_id}`: not minted\n\n{exc}",
            key=ARTIFACT_KEY,
            description="UseGrant mint-token run",
        )
        return Failed(message=str(exc))
    await acreate_markdown_artifact(
        markdown=result.to_markdown(), key=ARTIFACT_KEY, description="UseGrant mint-token run"
    )
    if result.action is not RotationAction.MINTED:
        message = f"token for client {client_id} not delivered: {result.reason}"
        logger.error("%s", message)
        return Failed(message=message)
    logger.info(
        "minted token %s (expires %s) -> %s",
        result.fingerprint,
        result.expires_at,
        ", ".join(result.sinks_written),
    )
    return result
