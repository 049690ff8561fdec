"""Detection of backdoored training rows, from a model trained on them.

Spectral signatures (Tran, Li and Madry, 2018). Within one label, the learned representations of
backdoored rows differ from the clean rows' along one direction, which the top singular vector
of the centred representations picks out; a row's outlier score is its squared projection on it.
Per label, the 1.5 * eps * n highest scores are flagged, eps being the expected fraction of
poisoned rows within a label.

Written here rather than taken from ART's SpectralSignatureDefense: that wants an ART classifier
and its layer activations, where genray's classifiers expose their features directly, and the
method itself is an SVD per label. The centring assumes that poisoned rows are a minority of
their label: at half or more, clean and poisoned rows sit equally far from the mean and the score
no longer tells them apart.

Activation clustering (Chen et al., 2018) does not assume that. Per label, the representations
are reduced (PCA) and split in two (k-means): backdoored rows, which the model maps alike whatever
they show, fall in one cluster. Each cluster is then tested by exclusionary reclassification,
here with a k-nearest-neighbour vote in input space (where the small trigger barely moves an image
and a poisoned row sits among clean rows of its true class; after Paudice et al., 2018): a
cluster most of whose rows the vote assigns to another label is poisoned, and all its rows are
flagged, the few the vote alone would keep included.

k-NN label sanitization (Paudice et al., 2018) flags each row the vote assigns to another label,
whatever its cluster: it needs no model, and it also removes the hardest clean rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genray.models.errors import OptionError


def spectral_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Outlier score per row (N,): the squared projection of the row's centred representation on
    the top singular vector of its label's representations (N, F)."""
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    scores = np.zeros(len(features))
    for c in np.unique(labels):
        rows = labels == c
        centred = features[rows] - features[rows].mean(0)  # (n_c, F)
        if len(centred) < 2:
            continue
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        scores[rows] = (centred @ vt[0]) ** 2
    return scores


def spectral_flags(features: np.ndarray, labels: np.ndarray, eps: float, multiplier: float = 1.5) -> np.ndarray:
    """Rows to remove (bool, N): per label, the ceil(multiplier * eps * n) highest scores."""
    if not 0 < eps <= 0.5:
        raise OptionError(f"eps (the expected poisoned fraction of a label) must be in (0, 0.5], got {eps}", "eps")
    if not 0 < multiplier * eps <= 1:
        raise OptionError("multiplier * eps must be in (0, 1]", "multiplier")
    labels = np.asarray(labels)
    scores = spectral_scores(features, labels)
    flags = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(np.ceil(multiplier * eps * len(idx)))
        flags[idx[np.argsort(scores[idx])[::-1][:k]]] = True
    return flags


@torch.no_grad()
def representations(classifier, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """The classifier's penultimate features of images (uint8 or [0, 1] floats), (N, F)."""
    classifier.eval()
    return torch.cat([classifier.features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
                     ).double().numpy()


@dataclass
class ClusterReport:
    label: int
    size: int
    agreement: float  # fraction of the cluster's rows whose neighbours' vote is their label
    poisoned: bool


def knn_agreement(inputs: np.ndarray, labels: np.ndarray, k: int = 10, rounds: int = 5) -> np.ndarray:
    """Per row (bool, N): does the plurality label of its k nearest other rows (Euclidean, in
    input space) equal its own? Rows that disagree leave the pool of voters and the vote runs
    again, up to `rounds` times: poisoned rows that first had poisoned neighbours (whose shared
    trigger pulls them together) then meet clean ones."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(inputs, dtype=np.float32).reshape(len(inputs), -1)
    labels = np.asarray(labels)
    K = int(labels.max()) + 1
    agree = np.ones(len(x), dtype=bool)
    for _ in range(rounds):
        voters = np.flatnonzero(agree)
        _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x[voters]).kneighbors(x)
        idx = voters[idx]  # (N, k + 1)
        # A voter is its own nearest neighbour; it must not vote for itself.
        own = idx == np.arange(len(x))[:, None]
        votes = np.where(own, -1, labels[idx])
        counts = np.stack([(votes == c).sum(1) for c in range(K)], 1)  # (N, K)
        now = counts.argmax(1) == labels
        if (now == agree).all():
            break
        agree = now
    return agree


def activation_clustering_flags(features: np.ndarray, inputs: np.ndarray, labels: np.ndarray, *, k: int = 10,
                                threshold: float = 0.5, n_components: int = 10,
                                seed: int = 0) -> tuple[np.ndarray, list[ClusterReport]]:
    """Rows to remove (bool, N), and a report per cluster: per label, 2-means on the PCA-reduced
    representations; a cluster is poisoned where less than `threshold` of its rows agree with
    their label under the k-NN vote in input space."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    if not 0 < threshold < 1:
        raise OptionError(f"threshold must be in (0, 1), got {threshold}", "threshold")
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    agree = knn_agreement(inputs, labels, k)
    flags, report = np.zeros(len(labels), dtype=bool), []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 4:
            continue
        reduced = PCA(n_components=min(n_components, len(idx) - 1, features.shape[1]),
                      random_state=seed).fit_transform(features[idx])
        clusters = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        for j in (0, 1):
            rows = idx[clusters == j]
            share = float(agree[rows].mean()) if len(rows) else 1.0
            poisoned = share < threshold
            flags[rows] |= poisoned
            report.append(ClusterReport(int(c), len(rows), share, poisoned))
    return flags, report


def knn_flags(inputs: np.ndarray, labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Rows to remove (bool, N): those whose k nearest rows in input space vote for another label."""
    return ~knn_agreement(inputs, labels, k)
