"""Data-set scale-out: explain many images on dask.distributed into a resumable zarr store.

``explain_dataset`` writes the store (layout in :mod:`clrp_widgets.scale.store`);
``neuron_stats`` reads it back lazily as the per-class ranking of neurons; ``local_cluster``
starts a LocalCluster suited to torch work.
"""

from clrp_widgets.scale.cluster import local_cluster
from clrp_widgets.scale.run import RunReport, explain_dataset
from clrp_widgets.scale.stats import neuron_stats

__all__ = ["RunReport", "explain_dataset", "local_cluster", "neuron_stats"]
