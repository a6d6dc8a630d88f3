"""Token counts and a deterministic completion text, from the served model's own `tokenizer.json`.

vLLM reports `usage.prompt_tokens` from the model's tokenizer; the conformance fixtures ship a
byte-level BPE `tokenizer.json`, so the simulator counts with its merges (GPT-2 pre-tokenisation,
byte-to-unicode alphabet, lowest-rank merge first). Without a readable tokenizer it falls back to
about four bytes per token. Generated text is a hash of (model, adapter, prompt): deterministic, short.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from functools import lru_cache

# GPT-2's pre-tokeniser, with \p{L} / \p{N} approximated by the stdlib's Unicode classes.
_PRETOKENIZE = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+|_+""", re.UNICODE
)


@lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


class Tokenizer:
    """A byte-level BPE from a HuggingFace `tokenizer.json`, or a byte-count estimate."""

    def __init__(self, vocab: dict[str, int] | None = None, merges: Sequence[tuple[str, str]] = ()) -> None:
        self.vocab = vocab or {}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self._inverse = {i: t for t, i in self.vocab.items()}
        self._unicode_to_byte = {c: b for b, c in _byte_to_unicode().items()}

    @classmethod
    def from_model_dir(cls, model: str) -> Tokenizer:
        """Load `<model>/tokenizer.json` if it is a byte-level BPE; otherwise an estimating tokenizer."""
        path = os.path.join(model, "tokenizer.json")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            spec = data["model"]
            if spec.get("type") != "BPE":
                return cls()
            merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec.get("merges", [])]
            return cls({str(k): int(v) for k, v in spec["vocab"].items()}, [(a, b) for a, b in merges])
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def _bpe(self, word: str) -> list[str]:
        parts = list(word)
        while len(parts) > 1:
            best: tuple[int, int] | None = None
            for i in range(len(parts) - 1):
                rank = self.ranks.get((parts[i], parts[i + 1]))
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, i)
            if best is None:
                break
            _, i = best
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return parts

    def count(self, text: str) -> int:
        """Number of tokens vLLM would count for `text`."""
        if not self.vocab:
            return max(1, (len(text.encode()) + 3) // 4) if text else 0
        table = _byte_to_unicode()
        total = 0
        for piece in _PRETOKENIZE.findall(text):
            mapped = "".join(table[b] for b in piece.encode("utf-8"))
            total += len(self._bpe(mapped))
        return total

    def generate(self, *, seed_text: str, count: int) -> str:
        """`count` tokens of deterministic text (decoded bytes may hold U+FFFD, like random weights)."""
        digest = hashlib.sha256(seed_text.encode()).digest()
        ids: list[int] = []
        while len(ids) < count:
            digest = hashlib.sha256(digest).digest()
            ids.extend(int.from_bytes(digest[i : i + 2], "big") for i in range(0, len(digest), 2))
        ids = ids[:count]
        if not self._inverse:
            alphabet = "abcdefghijklmnopqrstuvwxyz"
            return "".join(alphabet[i % len(alphabet)] for i in ids)
        keys = sorted(k for k in self._inverse if not self._inverse[k].startswith("<"))
        raw = bytearray()
        for i in ids:
            token = self._inverse[keys[i % len(keys)]]
            raw.extend(self._unicode_to_byte.get(ch, 63) for ch in token)
        return raw.decode("utf-8", errors="replace")
