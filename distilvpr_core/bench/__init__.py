"""Benchmarks, kept out of the product modules.

* :mod:`.cli`       ``distilvpr bench [embedder|map|distill|node]``
* :mod:`.embedder`  Embedder backends: latency, throughput, accuracy against torch
* :mod:`.accuracy`  Recall of one Embedder against another on a dataset
* :mod:`.map`       PriorMap search speed and recall per index type
* :mod:`.distill`   distillation step time per method
* :mod:`.sim`       synthetic-town render speed (``python -m distilvpr_core.bench.sim``)
"""
