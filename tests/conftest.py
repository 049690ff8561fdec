"""One local Ray cluster and one storage root for the whole test session."""
import os

# Fast failure detection and no telemetry; read by Ray processes when they start.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402

from genray.cluster.storage import Storage  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Tiny in-process models: more torch threads only contend on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def storage(tmp_path_factory) -> Storage:
    return Storage(str(tmp_path_factory.mktemp("genray-home")))


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from genray.cluster.connect import connect

    connect(num_cpus=4)
    yield
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def trained(ray_cluster, storage):
    """A quick 2-worker training of each family (and of the classifier and the summarizers), published to the
    session registry."""
    from genray.trainers.run import TrainSpec, train_bundle

    specs = {
        "markov": TrainSpec("markov", name="markov", workers=2, limit=256),
        "transformer": TrainSpec("transformer", name="transformer", workers=2, limit=256, epochs=2,
                                 model={"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 64}),
        "vae": TrainSpec("vae", name="vae", dataset="digits", workers=2, epochs=3, limit=512),
        "flow": TrainSpec("flow", name="flow", dataset="digits", workers=2, epochs=5, limit=512,
                          model={"n_coupling": 4, "hidden": 16}, lr=2e-3),
        "gan": TrainSpec("gan", name="gan", dataset="digits", workers=2, epochs=3, limit=512),
        "rnn": TrainSpec("rnn", name="rnn", workers=2, limit=256, epochs=2, model={"hidden": 64, "n_layer": 1},
                         train={"schedule": "cosine", "warmup_steps": 4}),
        "ar": TrainSpec("ar", name="ar", workers=2),
        "classifier": TrainSpec("classifier", name="classifier", dataset="digits", workers=2, epochs=6),
        "chorale": TrainSpec("rnn", name="chorale", dataset="chorales", workers=2, limit=256, epochs=3,
                             model={"hidden": 64, "n_layer": 1}),
        "chorale-gan": TrainSpec("music-gan", name="chorale-gan", workers=2, epochs=1, limit=256,
                                 model={"hidden": 16}),
        "brick-net": TrainSpec("style-net", name="brick-net", workers=2, epochs=1, limit=64,
                               model={"width": 4, "blocks": 1}),
        "summarizer": TrainSpec("sentence-scorer", name="summarizer", workers=2, epochs=2, limit=1024,
                                model={"hidden": 32, "dim": 32}),
        # Fed the summarizer's best sentences when it summarizes.
        "abstractor": TrainSpec("pointer-generator", name="abstractor", workers=2, epochs=1, limit=32,
                                model={"dim": 16, "hidden": 16, "extractor": "summarizer"}),
    }
    # One Ray Train run for all of them (a bundle): a run's start-up costs more than training
    # these small models. The abstractor comes after the summarizer it names.
    return train_bundle(list(specs.values()), storage, "session")
