"""Example flows: the deployment entrypoints of ``prefect.yaml``.

* :func:`flows.rotate_tokens.rotate_tokens`: keep a fleet of tokens fresh, on a schedule.
* :func:`flows.mint_token.mint_token`: mint one token now, for ad-hoc runs from the UI.
"""
