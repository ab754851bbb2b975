"""The UseGrant API, without Prefect: models, errors, settings, checks, retry, client, verify.

This package is the lowest layer of usegrant-flows and never imports Prefect (a test
imports it in a fresh interpreter and looks at ``sys.modules``), so scripts and other
tools can mint and verify tokens at the cost of ``httpx`` and ``pydantic``.

* :mod:`~usegrant_flows.api.models`: the wire models (``AccessToken`` keeps the JWT secret).
* :mod:`~usegrant_flows.api.errors`: the exception tree.
* :mod:`~usegrant_flows.api.settings`: ``USEGRANT_*`` environment, ``.env`` and keyring.
* :mod:`~usegrant_flows.api.checks`: argument checks and response parsing.
* :mod:`~usegrant_flows.api.retry`: which failures are retried, and how long we wait.
* :mod:`~usegrant_flows.api.gate`: the per-key circuit (429 pause, 401 stop).
* :mod:`~usegrant_flows.api.transport`: httpx pools and the bounded send (deadline, 64 KiB).
* :mod:`~usegrant_flows.api.core`: what both clients share (request, parse, retries).
* :mod:`~usegrant_flows.api.client`: ``UseGrantClient`` and ``AsyncUseGrantClient``.
* :mod:`~usegrant_flows.api.verify`: signature and claim checks against the issuer's JWKS.
"""
