"""Text from users and files, made safe to show inside Streamlit's Markdown.

Streamlit renders most text as Markdown: `**24**-11-22` typed into a box
would come back bold, `[a](http://e.com)` as a link, `:red[x]` coloured. A
date, a file name or a message quoting a checkpoint is shown as the plain
text it is, through one of these.
"""

from __future__ import annotations

import re
import string

# CommonMark lets a backslash escape any ASCII punctuation; escaping all of it
# also disarms what Streamlit adds (":red[...]", ":material/icon:", "$math$").
_PUNCTUATION = re.compile(f"([{re.escape(string.punctuation)}])")
# GitHub's Markdown links a bare address even so ("http://...", "www....",
# "a@b.com"): an invisible word joiner after ":" and "@", and inside "www.",
# breaks each pattern without changing what is seen.
_LINK_PARTS = re.compile(r"(:|@|(?i:www)(?=\\\.))")
WORD_JOINER = "\u2060"
# How the pages name each task: by what its inputs look like.
TASK_NAMES = {"yymmdd": "yy-mm-dd", "human": "as people write them"}


def plain(text: str) -> str:
    """Markdown that shows `text` exactly as written, on one line."""
    one_line = " ".join(str(text).splitlines())
    escaped = _PUNCTUATION.sub(r"\\\1", one_line)
    return _LINK_PARTS.sub(lambda m: m.group(1) + WORD_JOINER, escaped)


def code(text: str) -> str:
    """Inline code showing `text` as written: a token, a date, a file name."""
    one_line = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall("`+", one_line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"
