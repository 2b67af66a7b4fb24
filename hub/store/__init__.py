"""The data layer: the only place that builds queries."""
