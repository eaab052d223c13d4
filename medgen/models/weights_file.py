"""Load a model folder's ``*.safetensors`` weights into a network, checked before any tensor is read.

safetensors is a JSON header (names, dtypes, shapes, offsets) followed by raw tensor bytes: nothing
is unpickled, whatever the file holds. The header is read first and compared with the network's
state dict, so a renamed pickle, a truncated file or weights of another configuration fail with one
line naming the file, before any tensor is allocated.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from medgen.errors import DataError


def load_weights(network: nn.Module, path: str | Path, config_name: str) -> nn.Module:
    """Load the safetensors file ``path`` into ``network`` (in place; returned for chaining).

    Args:
        config_name: the file that described ``network`` (``config.yaml``), named when they disagree.

    Raises:
        DataError: naming ``path``: missing, not safetensors (e.g. a pickle), truncated, or tensors
            whose names or shapes differ from the network's.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), "pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - whatever the reader says, the file is not usable safetensors
        raise DataError(f"{path}: not a readable safetensors file ({_first_line(err)})") from None
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    if stored != expected:
        missing, extra = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
        shape = sorted(k for k in expected.keys() & stored.keys() if expected[k] != stored[k])
        example = (f"'{shape[0]}' is {list(stored[shape[0]])} in the file, {list(expected[shape[0]])} in the network"
                   if shape else f"'{missing[0]}' is missing" if missing else f"'{extra[0]}' is unexpected")
        raise DataError(f"{path}: weights do not match {config_name} "
                        f"({len(missing) + len(extra) + len(shape)} tensors differ, e.g. {example})")
    try:
        network.load_state_dict(load_file(str(path)))
    except Exception as err:  # noqa: BLE001 - a damaged data section
        raise DataError(f"{path}: unreadable tensor data ({_first_line(err)})") from None
    return network


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__
