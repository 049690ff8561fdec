"""Summarization: sentences and words, the extractive methods, ROUGE, the sentence scorer and the
pointer-generator on small data (no Ray; their Ray Train runs are the session's `trained`)."""
import numpy as np
import pytest
import torch

from genray.models.errors import OptionError
from genray.models.optim import OptimizerSettings
from genray.models.summarize import PointerGenerator, SentenceScorer, extract, rouge, split_sentences, summarize
from genray.models.summarize.extractive import within_tokens
from genray.models.summarize.pointer import encode_pair
from genray.models.summarize.text import SPECIALS, build_vocab, detokenize, words

pytestmark = pytest.mark.usefixtures("one_thread")

DOC = ["Parsing is hard because natural language is ambiguous .",
       "Prior parsers fail on long sentences , e.g. in legal text .",
       "We propose a chart parser with learned pruning .",
       "Our parser uses a neural scorer for each span .",
       "Experiments show that it improves accuracy by 2 points .",
       "We thank the reviewers ."]


def test_rouge_of_an_exact_copy_is_one_and_of_a_disjoint_text_zero():
    ref = "The proposed method outperforms state-of-the-art parsers by 2 points."
    assert rouge([ref], [ref]) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert rouge(["completely unrelated words here"], [ref]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    with pytest.raises(ValueError):
        rouge(["a", "b"], ["a"])


def test_sentences_split_at_ends_but_not_at_abbreviations():
    text = "We follow Smith et al. in this. Results, e.g. on WSJ, improve by 2.5 points! Why?\n\nA new paragraph"
    assert split_sentences(text) == ["We follow Smith et al. in this.", "Results, e.g. on WSJ, improve by 2.5 points!",
                                     "Why?", "A new paragraph"]
    assert words("State-of-the-art (SOTA) results.") == ["state-of-the-art", "(", "sota", ")", "results", "."]
    assert detokenize(["the", "model", "(", "ours", ")", "wins", ",", "by", "2", "%", "."]) == \
        "The model (ours) wins, by 2%."


def test_extractive_methods_keep_k_sentences_in_document_order():
    assert extract("lead", DOC, 2) == [0, 1]
    assert extract("random", DOC, 3, seed=4) == extract("random", DOC, 3, seed=4) != extract("random", DOC, 3, seed=5)
    for method in ("textrank", "lexrank"):
        kept = extract(method, DOC, 3)
        assert len(kept) == 3 and kept == sorted(kept) and set(kept) <= set(range(len(DOC)))
    kept = within_tokens(DOC, [4, 2, 0, 1, 3, 5], 22)  # 12 + 10 words fit; the next sentence would not
    assert kept == [2, 4] and sum(len(words(DOC[i])) for i in kept) <= 22
    out = summarize("lead", DOC, "approach", max_sentences=None, max_tokens=5)
    assert out["sentences"] == [0]  # one sentence at least, even over the budget
    with pytest.raises(OptionError) as e:
        summarize("lead", DOC, "method")
    assert e.value.field == "aspect"


def scorer_data():
    """Sentences whose label follows a cue word, like 'we propose' marks an approach."""
    rng = np.random.default_rng(0)
    filler = ["the", "data", "model", "results", "of", "a", "task", "text"]
    docs, labels = [], []
    for _ in range(40):
        doc, lab = [], []
        for _ in range(8):
            cue = rng.random() < 0.3
            body = " ".join(rng.choice(filler, 6))
            doc.append(f"we propose {body} ." if cue else f"{body} is known .")
            lab.append([0.0, float(cue), 0.0])
        docs.append(doc)
        labels.append(lab)
    return docs, labels


def test_the_sentence_scorer_learns_a_cue_and_ranks_by_it():
    from genray.models.summarize.scorer import encode_document

    docs, labels = scorer_data()
    vocab = build_vocab([s for d in docs for s in d], min_count=1)
    torch.manual_seed(0)
    model = SentenceScorer(vocab, dim=16, hidden=16)
    encs = [encode_document(d, vocab) for d in docs]
    batch = {k: torch.from_numpy(np.concatenate([e[k] for e in encs])).long() for k in ("tokens", "position")}
    batch["features"] = torch.from_numpy(np.concatenate([e["features"] for e in encs]))
    batch["labels"] = torch.tensor([x for lab in labels for x in lab])
    opts = model.make_optimizers(OptimizerSettings(lr=1e-2))
    first = model.eval_nll(batch)[0]
    for _ in range(60):
        model.train()
        model.train_step(batch, opts)
    assert model.eval_nll(batch)[0] < 0.3 * first
    doc = ["results of the task are known .", "we propose a model of text .", "the data is known ."]
    assert summarize(model, doc, "approach", max_sentences=1)["sentences"] == [1]
    assert model.score(doc, "approach")[1] > 0.5 > model.score(doc, "approach")[0]


def test_pairs_number_unknown_source_words_past_the_vocabulary_for_copying():
    index = {w: i for i, w in enumerate([*SPECIALS, "the", "model"])}
    V = len(index)
    enc, oov = encode_pair(["<approach>", "the", "zorbax", "model", "zorbax", "quux"], ["zorbax", "the", "blah"],
                           index, max_source=8, max_target=6, max_oov=4)
    assert oov == ["zorbax", "quux"]
    assert enc["source"][:6].tolist() == [index["<approach>"], V - 2, 1, V - 1, 1, 1]
    assert enc["source_ext"][:6].tolist() == [index["<approach>"], V - 2, V, V - 1, V, V + 1]
    assert enc["target_in"][:4].tolist() == [2, 1, V - 2, 1]  # BOS, then vocabulary ids (unknown: UNK)
    assert enc["target_out"][:4].tolist() == [V, V - 2, 1, 3]  # zorbax copied, blah unknown, EOS


def test_the_pointer_generator_learns_to_copy_words_it_has_never_seen():
    """Target: the source's first three words. Most are outside the vocabulary, so only the copy
    mechanism can write them."""
    rng = np.random.default_rng(0)
    vocab = [*SPECIALS, "the", "a", "of"]
    index = {w: i for i, w in enumerate(vocab)}
    rows = []
    for _ in range(64):
        src = [f"w{i}" for i in rng.integers(0, 1000, 6)]
        rows.append(encode_pair(["<outcome>", *src], src[:3], index, 12, 6, 8)[0])
    batch = {k: torch.from_numpy(np.stack([r[k] for r in rows])).long() for k in rows[0]}
    torch.manual_seed(0)
    model = PointerGenerator(vocab, dim=16, hidden=32, max_source=12, max_target=6, max_oov=8, dropout=0.0)
    opts = model.make_optimizers(OptimizerSettings(lr=1e-2))
    first = model.eval_nll(batch)
    for _ in range(150):
        model.train()
        model.train_step(batch, opts, max_grad_norm=2.0)
    total, count = model.eval_nll(batch)
    assert total / count < 0.2 * first[0] / first[1]
    out = summarize(model, ["zeta9 kappa7 omega3 delta1 ."], "outcome", extractor=lambda s, a, k: [0])
    assert out["summary"].lower().startswith("zeta9 kappa7 omega3") and out["source"] == [0]
