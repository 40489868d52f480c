"""The plan side: YAML text -> validated, frozen Plan objects that remember their positions.

Imports neither the database driver nor click. This file imports nothing, so that running a
cached plan (plan.model, plan.cache) never loads the YAML, JSON Schema or SQL parsers.
"""
