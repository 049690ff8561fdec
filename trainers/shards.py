"""How a run's training splits reach its workers. A split already in the object store
(datasets.fits_in_memory) is cut once into equal per-worker pieces with Dataset.split, which each
worker then reads locally; only larger splits stream through Ray Data's streaming_split, whose
coordinator actor costs seconds of start-up per data set (once per model in a bundle)."""
from __future__ import annotations

import ray.train


class Shards(ray.train.DataConfig):
    def __init__(self, split: list[str], in_memory: list[str]):
        super().__init__(datasets_to_split=split)
        self._in_memory = set(in_memory) & set(split)

    def configure(self, datasets: dict, world_size: int, worker_handles, worker_node_ids, **kwargs) -> list[dict]:
        small = {n: ds for n, ds in datasets.items() if n in self._in_memory}
        out = super().configure({n: ds for n, ds in datasets.items() if n not in small}, world_size,
                                worker_handles, worker_node_ids, **kwargs)
        for name, ds in small.items():
            ds.set_name(name)
            # equal=True: every worker takes as many steps as the others (DDP's collectives need it)
            for rank, piece in enumerate(ds.split(world_size, equal=True)):
                out[rank][name] = piece.iterator()
        return out
