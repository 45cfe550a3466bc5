"""Data-set scale-out: explain many images on dask.distributed into a resumable zarr store.

``explain_dataset`` writes the store (layout in :mod:`clrp_widgets.scale.store`);
``neuron_stats`` reads it back lazily as the per-class ranking of neurons.
"""

from clrp_widgets.scale.run import RunReport, explain_dataset
from clrp_widgets.scale.stats import neuron_stats

__all__ = ["RunReport", "explain_dataset", "neuron_stats"]
