"""Every rung is a compressor: its next-unit distributions drive a range coder (constriction's),
so the bits per character a rung is scored with become a file of about bits/char x chars / 8
bytes, and the file gives the text back byte for byte.

    data = compress(rung, text, run="runs/char8")   # bytes of a .llz file
    text = decompress(data, rung)                     # refuses a file made with another run

What is coded, for every kind (the escapes the scoring contract charges, lmladder.vocab):

    uniform, unigram   every character with the one distribution, then the unseen characters
    ngram (letters)    the letters, block by block (lmladder.compress.ngram), then unseen ones
    ngram (words)      the word units; then each unknown word spelled by the letter model that
                       scores it (to end-of-word); then the unseen characters of those spellings
    gpt, mlp           the tokens, block by block (lmladder.compress.neural); with a character
                       tokenizer, then the unseen characters (BPE has none: bytes are tokens)

An unseen character is a uniform choice among the Unicode scalar values the vocabulary lacks
(lmladder.compress.streams.Unseen). Long texts are cut into blocks coded side by side, so the
decoder works through them with one vectorised step per position.

The file format (.llz; all integers little-endian):

    magic      8 bytes  b"\\x89LLZ\\r\\n\\x1a\\n"
    length     4 bytes  the header's length H
    header     H bytes  UTF-8 JSON:
                 format "lmladder-compressed", version 1
                 run      kind, unit, path (where it was, to find it again) and digest: sha256
                          (first 32 hex) of its weights and tokenizer, or its tables and units
                 text     chars, bytes, sha256 (first 16 hex) of its UTF-8 bytes
                 coding   units (characters, words or tokens) and block (units per block)
                 made_on  device (cpu or cuda), the CPU or GPU, thread count, instruction set,
                          torch/numpy versions: what a neural rung's arithmetic depended on
                 versions lmladder, constriction
    payload    the range coder's 32-bit words, one stream: the units in coding order, then
               the spellings, then the unseen characters
    crc        4 bytes  CRC-32 of everything before it

A file that does not start with the magic, fails its CRC (corrupt or truncated), has a header
field of the wrong type or out of range (a count of units the text's size or the payload's bits
could not hold, a block length below 1 or past the units: checked before anything is allocated
for them), was made with another run (digest), fails in the range coder, or decodes to a text
whose checksum differs is refused with one error.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from typing import Any

from lmladder.errors import LadderError

MAGIC = b"\x89LLZ\r\n\x1a\n"
FORMAT = "lmladder-compressed"
VERSION = 1
SUFFIX = ".llz"
MOST_UNITS = 1 << 40  # characters, words or tokens: a header's count past this is corrupt
UNITS = ("char", "word", "token")
MAX_RECORDED_THREADS = 4096  # a decompression uses the thread count a file records: past this, a corrupt file


def check_threads(threads: int | None) -> None:
    """Refuse a thread count below 1, or far past the machine's cores (torch crashes there)."""
    if threads is None:
        return
    from lmladder.runtime import THREADS_PER_CORE, thread_limit

    most, cores = thread_limit()
    if not 1 <= threads <= most:
        raise LadderError(f"--threads must be between 1 and {most} ({THREADS_PER_CORE} x the {cores} usable cores of "
                          "this machine); "
                          f"got {threads}")


def coder(rung, device: str | None = None, threads: int | None = None):
    """The coder of a rung, by its kind."""
    from lmladder.baselines import LetterDistribution
    from lmladder.ngrammodel import NgramModel

    if isinstance(rung, LetterDistribution):
        from lmladder.compress.letters import LetterCoder

        return LetterCoder(rung)
    if isinstance(rung, NgramModel):
        from lmladder.compress.ngram import NgramCoder

        return NgramCoder(rung)
    if hasattr(rung, "tokenizer") and hasattr(rung, "model"):
        from lmladder.compress.neural import NeuralCoder

        return NeuralCoder(rung, device, threads)
    raise LadderError(f"a {type(rung).__name__} rung has no next-unit distributions, so it cannot compress")


def _kind(rung) -> str:
    return getattr(rung, "kind", None) or "ngram"


def _versions() -> dict[str, str]:
    from importlib import metadata

    from lmladder import __version__

    return {"lmladder": __version__, "constriction": metadata.version("constriction")}


def _made_on(c) -> dict[str, Any]:
    import numpy as np

    made = c.made_on() if hasattr(c, "made_on") else {"device": "cpu"}
    return {**made, "numpy": np.__version__}


def text_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def compress(rung, text: str, *, run: str | None = None, block: int | None = None,
             device: str | None = None, threads: int | None = None) -> bytes:
    """The .llz file of `text` under `rung` (`run`: where the rung lives, recorded to find it)."""
    from lmladder.compress import streams

    check_threads(threads)
    c = coder(rung, device, threads)
    enc = streams.encoder()
    coding = c.encode(text, enc, block)
    raw = text.encode("utf-8")
    header = {"format": FORMAT, "version": VERSION,
              "run": {"kind": _kind(rung), "unit": c.unit, "path": run, "digest": c.digest()[:32]},
              "text": {"chars": len(text), "bytes": len(raw), "sha256": text_sha(raw)},
              "coding": coding, "made_on": _made_on(c), "versions": _versions()}
    return pack(header, enc.get_compressed().astype("<u4").tobytes())


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = MAGIC + struct.pack("<I", len(head)) + head + payload
    return body + struct.pack("<I", zlib.crc32(body))


def read(data: bytes, source: str = "the file") -> tuple[dict[str, Any], bytes]:
    """The header and payload of a .llz file; anything lmladder did not make, or that is
    corrupt or cut short, is an error."""
    if not data.startswith(MAGIC):
        raise LadderError(f"{source} is not a file lmladder compressed (it does not start with the .llz magic)")
    if len(data) < len(MAGIC) + 8:
        raise LadderError(f"{source} is truncated (only {len(data)} bytes); compress the text again")
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise LadderError(f"{source} is corrupt or truncated (its CRC-32 does not match); compress the text again")
    (size,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(data[start:start + size].decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise LadderError(f"{source} has a header lmladder cannot read; the file is corrupt")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise LadderError(f"{source} is format {_shown(header.get('format'))} version {_shown(header.get('version'))}; "
                          f"this lmladder reads {FORMAT} version {VERSION}")
    check_header(header, source)
    payload = data[start + size:-4]
    if len(payload) % 4:
        raise LadderError(f"{source} is corrupt (its payload is not whole 32-bit words)")
    return header, payload


def _shown(value: Any) -> str:
    shown = repr(value) if isinstance(value, float) else json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _corrupt(source: str, field: str, value: Any, why: str) -> LadderError:
    return LadderError(f"{source} is corrupt (its header's {field} is {_shown(value)}, {why}); compress the text again")


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MOST_UNITS


def _folder_name(path: Any) -> bool:
    """A string that can name a folder (no NUL, within Linux's PATH_MAX and NAME_MAX)."""
    if not isinstance(path, str) or "\0" in path or len(path.encode("utf-8", "surrogatepass")) > 4096:
        return False
    return all(len(part.encode("utf-8", "surrogatepass")) <= 255 for part in path.split("/"))


def check_header(header: dict[str, Any], source: str = "the file") -> None:
    """Refuse a header whose fields are not what `compress` writes: every type and range, and
    the counts against each other (a unit is a character, a word of at least one character or
    a token of at least one byte), before anything is loaded or allocated for them."""
    for part in ("run", "text", "coding"):
        if not isinstance(header.get(part), dict):
            raise _corrupt(source, part, header.get(part), "not a table of fields")
    if not isinstance(header.get("made_on", {}), dict):
        raise _corrupt(source, "made_on", header["made_on"], "not a table of fields")
    run, text, coding = header["run"], header["text"], header["coding"]
    for field, value in (("run.kind", run.get("kind")), ("run.digest", run.get("digest")),
                         ("text.sha256", text.get("sha256"))):
        if not isinstance(value, str):
            raise _corrupt(source, field, value, "not a string")
    if run.get("unit") not in UNITS:
        raise _corrupt(source, "run.unit", run.get("unit"), f"not one of {', '.join(UNITS)}")
    if run.get("path") is not None and not _folder_name(run["path"]):
        raise _corrupt(source, "run.path", run["path"], "not the name of a folder")
    chars, size, units = text.get("chars"), text.get("bytes"), coding.get("units")
    for field, value in (("text.chars", chars), ("text.bytes", size), ("coding.units", units)):
        if not _count(value):
            raise _corrupt(source, field, value, "not a count from 0 to 2**40")
    if not chars <= size <= 4 * chars:
        raise _corrupt(source, "text.bytes", size, f"not the UTF-8 size of {chars:,} characters (1 to 4 bytes each)")
    unit = run["unit"]
    if unit == "char" and units != chars:
        raise _corrupt(source, "coding.units", units, f"but the text has {chars:,} characters, one unit each")
    if units > (size if unit == "token" else chars):
        have = f"{size:,} bytes" if unit == "token" else f"{chars:,} characters"
        raise _corrupt(source, "coding.units", units, f"more {unit}s than the text's {have}")
    if "block" in coding:
        block = coding["block"]
        if not (type(block) is int and 1 <= block <= (units or MOST_UNITS)):
            raise _corrupt(source, "coding.block", block, f"not a block length from 1 to {units or MOST_UNITS:,} units")


def most_units(c, payload: int) -> int:
    """More units than `payload` bytes could code with coder `c`: each of a row's V symbols
    gets at least 1 of the range coder's 2^24 (lmladder.compress.streams), so a unit costs at
    least -log2(1 - (V - 1) / 2^24) bits, and under a letter coder's one distribution at least
    -log2 of its largest quantised probability. A range coder's output holds all but the 64
    bits of its state; twice the payload's bits, and then some, are the slack."""
    import numpy as np

    probs = getattr(c, "probs", None)
    symbols = len(probs) if probs is not None else c.symbols
    top = 1 - (symbols - 1) / 2**24
    if probs is not None and len(probs):
        p = np.asarray(probs, dtype=np.float64)
        if p.sum() > 0:
            top = min(top, 1.01 * float(p.max() / p.sum()) + 4 / 2**24)
    bits = -math.log2(top) if 0 < top < 1 else 0.0
    return min(MOST_UNITS, int(2 * (8 * payload + 256) / bits) + 16) if bits > 0 else MOST_UNITS


def check_coding(header: dict[str, Any], c, payload: int, source: str = "the file") -> None:
    """Refuse coding parameters that do not fit the run (`c`, its coder) or the payload's size."""
    from lmladder.compress.letters import LetterCoder

    coding, unit = header["coding"], header["run"]["unit"]
    if unit != c.unit:
        raise _corrupt(source, "run.unit", unit, f"but its run codes {c.unit} units")
    if "block" not in coding and not isinstance(c, LetterCoder):
        raise _corrupt(source, "coding", coding, "without the block length this run's files record")
    most = most_units(c, payload)
    if coding["units"] > most:
        raise _corrupt(source, "coding.units", coding["units"], f"more than its {payload:,}-byte payload can code "
                       f"(at most {most:,} {unit}s)")


def check_run(header: dict[str, Any], rung, source: str, run: str) -> Any:
    """The coder to decode `header`'s file with, after checking `rung` is the run that made it."""
    made = header.get("made_on", {})
    device, threads = None, None
    if header["run"]["kind"] in ("gpt", "mlp"):
        import torch

        if made.get("device") == "cuda":
            if not torch.cuda.is_available():
                raise LadderError(f"{source} was compressed on a GPU ({made.get('gpu', '?')}), whose arithmetic a CPU "
                                  "does not reproduce; decompress it on a machine with that GPU")
            device = "cuda"
        else:
            threads = made.get("threads") or torch.get_num_threads()
            if type(threads) is not int or not 1 <= threads <= MAX_RECORDED_THREADS:
                raise LadderError(f"{source} records {threads!r} CPU threads, not a thread count lmladder writes; "
                                  "the file is corrupt")
            device = "cpu"
    c = coder(rung, device, threads)
    digest = c.digest()[:32]
    if digest != header["run"]["digest"]:
        raise LadderError(f"{source} was compressed with another run ({header['run']['kind']}, digest "
                          f"{header['run']['digest'][:12]}, at {header['run'].get('path') or '?'}); {run} has digest "
                          f"{digest[:12]}: give the run it was made with")
    if header["run"]["kind"] != _kind(rung):
        raise _corrupt(source, "run.kind", header["run"]["kind"], f"but its run is of kind {_kind(rung)}")
    return c


def decompress(data: bytes, rung, *, source: str = "the file", run: str = "the run") -> str:
    """The text of a .llz file, checked against the checksum it carries."""
    import numpy as np

    from lmladder.compress import streams

    header, payload = read(data, source)
    c = check_run(header, rung, source, run)
    check_coding(header, c, len(payload), source)
    words = np.frombuffer(payload, dtype="<u4")
    with streams.guarded(source):
        text = c.decode({**header["coding"], "chars": int(header["text"]["chars"])}, streams.decoder(words))
    raw = text.encode("utf-8", "surrogatepass")
    if len(text) != header["text"]["chars"] or text_sha(raw) != header["text"]["sha256"]:
        made, now = header.get("made_on", {}), _made_on(c)
        differs = {k: (made.get(k), now.get(k)) for k in set(made) | set(now) if made.get(k) != now.get(k)}
        raise LadderError(f"{source} did not decode to the text it was made from (checksum differs): the file is "
                          f"corrupt, or the run's arithmetic differs from when it was compressed"
                          f"{' (made on / now: ' + str(differs) + ')' if differs else ''}")
    return text
