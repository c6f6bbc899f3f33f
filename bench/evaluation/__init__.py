"""The paper's evaluation protocol at scale (PAPER.md section 6, DESIGN.md section 9).

- ``loop``: the evaluation loop of ``task=train`` and ``task=evaluate``: every (weights, NFE, guidance)
  point, sharded over all processes, features gathered to rank 0, one record entry per point;
- ``shard``: sample i keyed by (seed, i) whatever the world size, rows gathered in sample order;
- ``labels``: the class labels of FID-50K (50 per class); ``sweep``: guidance grids and search;
- ``adm``: samples as the ADM evaluator's ``.npz``, its printed numbers read back
  (``python -m bench.evaluation import-adm-result``);
- ``memorisation``, ``clip``: nearest training images in CLIP (or Inception) features, the paper's Fig. 6;
- ``checkpoints``: which kept checkpoints ``task=evaluate`` loads; ``protocol``: validation of ``eval.*``.
"""
