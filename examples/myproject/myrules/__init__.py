"""An example of a project's own rules, proved by symgrad (see the project's README)."""
