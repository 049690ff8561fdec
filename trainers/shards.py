"""How a run's training splits reach its workers. A split already in the object store
(datasets.fits_in_memory) is cut into equal per-worker pieces by the driver before the run starts,
while its CPUs are free (Dataset.split runs Ray tasks, which would wait for a CPU once the workers
hold them all); each worker then reads its piece locally. Only larger splits stream through Ray
Data's streaming_split, whose coordinator actor costs seconds of start-up per data set (once per
model in a bundle)."""
from __future__ import annotations

import ray.train


class Shards(ray.train.DataConfig):
    def __init__(self, split: list[str], pieces: dict[str, list]):
        super().__init__(datasets_to_split=split)
        self._pieces = pieces  # {data set name: its equal pieces, one per worker}

    @classmethod
    def cut(cls, data: dict, train: dict[str, bool], workers: int) -> Shards:
        """`train`: each training split's name -> whether it is in memory (cut now) or streams."""
        # equal=True: every worker takes as many steps as the others (DDP's collectives need it)
        return cls(list(train), {name: data[name].split(workers, equal=True) for name, small in train.items() if small})

    def configure(self, datasets: dict, world_size: int, worker_handles, worker_node_ids, **kwargs) -> list[dict]:
        out = super().configure({n: ds for n, ds in datasets.items() if n not in self._pieces}, world_size,
                                worker_handles, worker_node_ids, **kwargs)
        for name in datasets.keys() & self._pieces.keys():
            if len(self._pieces[name]) != world_size:
                raise ValueError(f"{name} was cut for {len(self._pieces[name])} workers, not {world_size}")
            for rank, piece in enumerate(self._pieces[name]):
                out[rank][name] = piece.iterator()
        return out
