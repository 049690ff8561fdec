"""Weights <-> safetensors bytes: the only weight format genray reads or writes (no pickle)."""
from __future__ import annotations

from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn


def to_bytes(module: nn.Module) -> bytes:
    return state_to_bytes(module.state_dict())


def state_to_bytes(state: dict) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    # safetensors refuses tensors that share memory (tied weights): store repeats as copies.
    seen: set[int] = set()
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        if ptr in seen:
            state[k] = v.clone()
        seen.add(ptr)
    return st_save(state)


def state_from_bytes(data: bytes) -> dict:
    return st_load(data)


def load_bytes(module: nn.Module, data: bytes) -> nn.Module:
    module.load_state_dict(st_load(data))
    return module


