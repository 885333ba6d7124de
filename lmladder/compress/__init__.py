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

A file that does not start with the magic, fails its CRC (corrupt or truncated), was made with
another run (digest), or decodes to a text whose checksum differs is refused with one error.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from typing import Any

from lmladder.errors import LadderError

MAGIC = b"\x89LLZ\r\n\x1a\n"
FORMAT = "lmladder-compressed"
VERSION = 1
SUFFIX = ".llz"
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
        header["run"]["digest"], header["text"]["sha256"], header["coding"]["units"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise LadderError(f"{source} has a header lmladder cannot read; the file is corrupt") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise LadderError(f"{source} is format {header.get('format')} version {header.get('version')}; this lmladder "
                          f"reads {FORMAT} version {VERSION}")
    payload = data[start + size:-4]
    if len(payload) % 4:
        raise LadderError(f"{source} is corrupt (its payload is not whole 32-bit words)")
    return header, payload


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
    return c


def decompress(data: bytes, rung, *, source: str = "the file", run: str = "the run") -> str:
    """The text of a .llz file, checked against the checksum it carries."""
    import numpy as np

    from lmladder.compress import streams

    header, payload = read(data, source)
    c = check_run(header, rung, source, run)
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
