"""The backend contract: every database backend passes these tests.

See docs/topics/backend-contract.md.
"""
