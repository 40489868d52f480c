"""The connect side: where to connect and how (URL, .env, PG*, TLS), and the embedded server.

Imports neither the plan nor the run side, nor click.
"""
