"""sqlplan: declarative, YAML-driven SQL plans for PostgreSQL."""

__version__ = "0.1.0"
