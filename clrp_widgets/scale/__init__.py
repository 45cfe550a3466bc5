"""Data-set scale-out: explain many images on dask.distributed into a resumable zarr store.

``explain_dataset`` writes the store (layout in :mod:`clrp_widgets.scale.store`);
``neuron_stats`` reads it back lazily as the per-class ranking of neurons; ``local_cluster``
starts a LocalCluster suited to torch work. ``reference_samples`` and ``reference_maps`` give a
neuron's reference samples (its top samples by contrastive relevance, relevance or activation)
and their conditional maps.
"""

from clrp_widgets.scale.atlas import reference_maps, reference_samples
from clrp_widgets.scale.cluster import local_cluster
from clrp_widgets.scale.run import RunReport, explain_dataset
from clrp_widgets.scale.stats import neuron_stats

__all__ = [
    "RunReport",
    "explain_dataset",
    "local_cluster",
    "neuron_stats",
    "reference_maps",
    "reference_samples",
]
