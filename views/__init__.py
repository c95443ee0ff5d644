"""The lab's explanatory views: one module per tab after Generate and Compare.

Each module has the same three parts:
- ``PARAMS``: the named inputs of its API endpoint (also the tab's controls, in order);
- ``rows(values, limits)`` (or a generator of them): checks the inputs and computes the data
  behind the plot with ``lab.analysis`` -- plain rows, no Gradio;
- ``tab(ctx)``: draws the tab and wires its button to a named endpoint.

``schedule``  where every model evaluation lands on the noise axis
``teaching``  2-D trajectories over the density, against an accurate reference
``errors``    error against model evaluations, with fitted orders
``training_set``  the default network beside its ideal-denoiser twin and the nearest training images

The per-run trace (x0 strip, per-step change) belongs to a single run and lives under Generate.
"""
