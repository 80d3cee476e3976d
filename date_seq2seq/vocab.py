"""Vocabulary: tokens <-> ids, with <PAD>=0, <GO>, <EOS> first and the rest sorted.

The tutorials built theirs from a Python `set`, so the ids changed with the hash
seed and a saved model was useless in a new process. Here the order is fixed by
sorting, and the token list is saved with every model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PAD, GO, EOS = "<PAD>", "<GO>", "<EOS>"
SPECIALS = (PAD, GO, EOS)
PAD_ID, GO_ID, EOS_ID = 0, 1, 2  # their ids: every vocabulary starts with SPECIALS


class Vocabulary:
    """A fixed, ordered token list; id = position in the list."""

    pad_id, go_id, eos_id = PAD_ID, GO_ID, EOS_ID

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError(f"vocabulary must start with {', '.join(SPECIALS)}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        if not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("vocabulary tokens must be non-empty strings")
        self.tokens: list[str] = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]]) -> Vocabulary:
        """Build from token sequences: specials first, then every token sorted."""
        seen = {token for seq in sequences for token in seq}
        return cls(list(SPECIALS) + sorted(seen - set(SPECIALS)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids; an unknown token is a KeyError naming it."""
        try:
            return [self._ids[t] for t in tokens]
        except KeyError as e:
            raise KeyError(f"token {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Map ids to tokens; with strip, stop at <EOS> and drop <GO>/<PAD>."""
        out = []
        for i in ids:
            token = self.tokens[int(i)]
            if strip and token == EOS:
                break
            if strip and token in SPECIALS:
                continue
            out.append(token)
        return out

    def to_list(self) -> list[str]:
        """Return the token list, as saved in a checkpoint."""
        return list(self.tokens)
