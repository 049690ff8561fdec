"""Text: character sequences. Samples are strings; data are rows of character ids."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from genray.models.codecs.text import CharVocab
from genray.models.errors import DataError
from genray.models.modalities.base import fixed_list, register, val_mask
from genray.models.modalities.symbols import SymbolModality

SEQ_LEN = 256  # symbols per row (+1 overlapping)


@register
class Text(SymbolModality):
    name = "text"
    nll_unit = "nats/char"
    what = "characters"

    def tables(self, docs: list[str]) -> tuple[pa.Table, pa.Table, dict]:
        """Documents -> train and validation rows of SEQ_LEN + 1 ids (a seeded 90/10 split of rows)."""
        vocab = CharVocab.from_text(docs)
        rows = [r for doc in docs if (r := self.token_rows(vocab.encode(doc).astype(np.int32), SEQ_LEN)) is not None]
        if not rows:
            raise DataError(f"text is shorter than {SEQ_LEN + 1} characters")
        rows = np.concatenate(rows)
        val = val_mask(len(rows))
        meta = {"modality": self.name, "vocab": vocab.chars, "seq_len": SEQ_LEN + 1}
        return pa.table({"tokens": fixed_list(rows[~val])}), pa.table({"tokens": fixed_list(rows[val])}), meta
