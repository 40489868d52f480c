"""The run side: a validated plan on one connection (engine, wire protocol, turns, row sources).

Imports the plan side and the driver, never click.
"""
