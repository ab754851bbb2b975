"""Keeping a fleet of tokens fresh: the top of the library.

* :mod:`~usegrant_flows.rotation.policy`: when a held token is due, and the result rows.
* :mod:`~usegrant_flows.rotation.fleet`: rotation targets and fleet documents.
* :mod:`~usegrant_flows.rotation.fleet_file`, :mod:`~usegrant_flows.rotation.fleet_block`:
  a fleet read strictly from a file, or kept in the Prefect server.
* :mod:`~usegrant_flows.rotation.plan`: a fleet planned against its request budgets.
* :mod:`~usegrant_flows.rotation.locks`: per-target locks between runs on one machine.
* :mod:`~usegrant_flows.rotation.lease`: leases across machines, batch claims in the
  Prefect server (:mod:`~usegrant_flows.rotation.claims`).
* :mod:`~usegrant_flows.rotation.holdings`: what a target's sinks hold, and whether it is fresh.
* :mod:`~usegrant_flows.rotation.runner`: one target from its sinks' tokens to a result.
* :mod:`~usegrant_flows.rotation.tasks`: the batch tasks and the run's artifact.
* :mod:`~usegrant_flows.rotation.split`, :mod:`~usegrant_flows.rotation.dispatch`: each
  work queue's targets rotated by a child run on that queue.
* :mod:`~usegrant_flows.rotation.rotate_flow`, :mod:`~usegrant_flows.rotation.mint_flow`:
  the flows the deployments run.
"""
