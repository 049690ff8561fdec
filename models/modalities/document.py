"""Documents: papers split into sentences, with aspect summaries and sentence highlights
(ACLSum). Summarizers train on them; rows are either one per sentence, for a sentence scorer
("aclsum": its words, position, features and a highlight label per aspect), or one per
(paper, aspect), for an abstractive model ("aclsum-pairs": the aspect and its highlighted
sentences as the source, the summary as the target)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from genray.models.errors import DataError
from genray.models.modalities.base import Modality, dense, fixed_list, register
from genray.models.summarize.pointer import encode_pair, source_words
from genray.models.summarize.scorer import encode_document
from genray.models.summarize.text import ASPECTS, build_vocab, words

ROWS = ("sentences", "pairs")
MAX_SOURCE, MAX_TARGET, MAX_OOV = 200, 48, 64


@register
class Document(Modality):
    name = "document"
    nll_unit = "nats/label"

    def to_text(self, sample):
        return sample

    def to_tensors(self, meta: dict, batch: dict[str, np.ndarray]) -> dict:
        out = {}
        for k, v in batch.items():
            arr = dense(v)
            out[k] = torch.from_numpy(arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int64))
        return out

    def tables(self, train: list[dict], val: list[dict], test: list[dict],
               rows: str) -> tuple[dict[str, pa.Table], dict]:
        """Papers (trainers.corpora.aclsum's dicts) of each split -> rows of one kind; the
        vocabulary is the training papers' words."""
        if rows not in ROWS:
            raise DataError(f"document rows are {ROWS}, not {rows!r}")
        if not train or not val or not test:
            raise DataError("summarization data needs training, validation and test papers")
        vocab = build_vocab([s for p in train for s in p["sentences"]] + [p["summaries"][a] for p in train
                                                                          for a in ASPECTS])
        meta = {"modality": self.name, "rows": rows, "vocab": vocab, "aspects": list(ASPECTS),
                "papers": {"train": len(train), "val": len(val), "test": len(test)}}
        if rows == "pairs":
            meta.update(max_source=MAX_SOURCE, max_target=MAX_TARGET, max_oov=MAX_OOV)
            build = self._pairs
        else:
            build = self._sentences
        index = {w: i for i, w in enumerate(vocab)}
        return {"train": build(train, index), "val": build(val, index), "test": build(test, index)}, meta

    @staticmethod
    def _sentences(papers: list[dict], index: dict[str, int]) -> pa.Table:
        cols: dict[str, list] = {"tokens": [], "position": [], "features": [], "labels": []}
        for p in papers:
            enc = encode_document(p["sentences"], index)
            for k in ("tokens", "position", "features"):
                cols[k].append(enc[k])
            cols["labels"].append(np.stack([p["highlights"][a] for a in ASPECTS], 1).astype(np.float32))
        arrays = {k: np.concatenate(v) for k, v in cols.items()}
        return pa.table({"tokens": fixed_list(arrays["tokens"]), "position": pa.array(arrays["position"]),
                         "features": fixed_list(arrays["features"]), "labels": fixed_list(arrays["labels"])})

    @staticmethod
    def _pairs(papers: list[dict], index: dict[str, int]) -> pa.Table:
        """A row per (paper, aspect): the highlighted sentences (the lead three where none is)."""
        rows = []
        for p in papers:
            for a in ASPECTS:
                chosen = [s for s, h in zip(p["sentences"], p["highlights"][a]) if h] or p["sentences"][:3]
                enc, _ = encode_pair(source_words(a, chosen, MAX_SOURCE), words(p["summaries"][a]), index,
                                     MAX_SOURCE, MAX_TARGET, MAX_OOV)
                rows.append(enc)
        return pa.table({k: fixed_list(np.stack([r[k] for r in rows])) for k in rows[0]})
