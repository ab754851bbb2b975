"""Example flows: the deployment entrypoints of ``prefect.yaml``, thin over the package.

* ``flows/rotate_tokens.py``: keep a fleet of tokens fresh, on a schedule.
* ``flows/mint_token.py``: mint one token now, for ad-hoc runs from the UI.
"""
