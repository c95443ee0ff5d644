"""The page data the views draw (error curves, densities, trajectories, traces, the schedule table).

They still live in ``samplers.analysis``; this is the one place lab/ and views/ take them from, so
moving them here later changes this file only.
"""
from samplers.analysis import (commit_index, density_grid, density_rows, endpoint_distances, error_curve,  # noqa: F401
                               fit_order, flow_reference, planned_runs, reference_trajectory, schedule_table,
                               trace, trajectories, trajectory_rows)
