"""safetensors files written the same way every time.

safetensors writes a file's metadata keys in the order of a Rust hash map, which changes from
process to process, so the same tensors and metadata can come out as different bytes. save()
writes the file, then writes its header again with the metadata keys in the order given: the
same length (the same keys and values, in another order), so the data offsets stay put.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save(tensors: dict[str, Any], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        written = header.pop("__metadata__")
        text = json.dumps({"__metadata__": {k: written[k] for k in metadata}, **header}, separators=(",", ":")).encode()
        if len(text) > size:  # never: the same keys and values, only their order differs
            raise ValueError(f"{path}: the safetensors header grew when reordered")
        f.seek(8)
        f.write(text.ljust(size))
