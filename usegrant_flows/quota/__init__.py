"""Request budgets: how many token requests an API key may make, and who waits.

* :mod:`~usegrant_flows.quota.budget`: the budget maths and the in-process window
  limiter (no Prefect).
* :mod:`~usegrant_flows.quota.limiter`: the budget shared by every process through a
  Prefect global concurrency limit.
"""
