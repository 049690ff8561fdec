"""Optuna samplers as Tune needs them: Tune pickles its searcher to start a sweep and to
checkpoint it, and Optuna's genetic samplers (5.1 and later) hold a threading lock."""
import threading

import optuna


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that drops its lock when pickled and makes a new one when unpickled."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()
