"""The target-run planner: from a tuned proxy and fitted (or published) laws to a complete plan."""

from sizeup.plan.planner import Plan, Proxy, Shape, layer_table, plan, shape_for

__all__ = ["Plan", "Proxy", "Shape", "layer_table", "plan", "shape_for"]
