"""The review side: what a reviewer sees without running a plan (warnings, transactions, show).

Imports the plan side and the run side's turn grouping; never the driver or click.
"""
