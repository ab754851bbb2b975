"""Entrypoint of the ``mint-token`` deployment: the package's one-token flow.

Copy this file into your own repository to deploy the flow from there; the flow itself
lives in :mod:`usegrant_flows.rotation.mint_flow`.
"""

from usegrant_flows.rotation.mint_flow import mint_token

__all__ = ["mint_token"]
