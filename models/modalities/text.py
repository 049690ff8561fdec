"""Text: character sequences. Samples are strings; data are rows of character ids."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from genray.models.codecs.text import CharVocab
from genray.models.errors import DataError
from genray.models.modalities.base import fixed_list, register
from genray.models.modalities.symbols import SymbolModality
from genray.models.splits import SPLITS, tail_blocks

SEQ_LEN = 256  # symbols per row (+1 overlapping)


@register
class Text(SymbolModality):
    name = "text"
    nll_unit = "nats/char"
    what = "characters"

    def tables(self, docs: list[str]) -> tuple[dict[str, pa.Table], dict]:
        """Documents -> rows of SEQ_LEN + 1 ids in train / val / test: the last tenth of each
        document's rows is test and the tenth before it val (models/splits.tail_blocks), so that
        no test row's neighbour is in training."""
        vocab = CharVocab.from_text(docs)
        rows = [r for doc in docs if (r := self.token_rows(vocab.encode(doc).astype(np.int32), SEQ_LEN)) is not None]
        if sum(map(len, rows)) < 3:
            raise DataError(f"text is shorter than {3 * SEQ_LEN + 1} characters (three rows: train, val and test)")
        split = tail_blocks([len(r) for r in rows])
        rows = np.concatenate(rows)
        meta = {"modality": self.name, "vocab": vocab.chars, "seq_len": SEQ_LEN + 1}
        return {name: pa.table({"tokens": fixed_list(rows[split == i])}) for i, name in enumerate(SPLITS)}, meta
