"""Entrypoint of the ``rotate-tokens`` deployment: the package's rotation flow.

Copy this file into your own repository to deploy the flow from there; the flow itself
lives in :mod:`usegrant_flows.rotation.rotate_flow`.
"""

from usegrant_flows.rotation.rotate_flow import rotate_tokens

__all__ = ["rotate_tokens"]
