"""The example values published scripts ship for the user to replace, and how the reader keeps them.

Two spellings are common:

    TOKENIZER_PATH="your tokenizer path"      MindSpeed-LLM: a quoted value with blanks, which an unquoted
                                              `$TOKENIZER_PATH` splits into words (script_values.py and
                                              lost_values.py keep such a value as one, with a warning)
    CHECKPOINT_PATH=<Specify path>            Megatron-LM's older examples: unquoted, so bash reads `<` and `>`
    --save <PATH TO CHECKPOINTS DIRECTORY>    as redirections and refuses the line

The lexer reads the second as if it were quoted (CHECKPOINT_PATH='<Specify path>') and keeps a note of it, which
the reader reports, so the converted configuration shows the placeholder where the user has to put a value.
"""
from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"(^|\s)(your|path to)\s|<[^>]*>|\bxxx\b", re.IGNORECASE)

# `<text>rest` after `NAME=` or after a flag (the lexer reads it there): text with a letter and no quote, `$`, `<`,
# `>` or `=`, no blank at either end (`<in >out` stays redirections), then the rest of the word, then a blank, `;`,
# `#`, a backslash or the end of the line.
ANGLE_VALUE = re.compile(r"<(?=\S)[^<>'\"$=\n]*[A-Za-z][^<>'\"$=\n]*(?<=\S)>[^\s;&|<>'\"()\\]*(?=[ \t]|[;#\n\\]|$)")


def is_placeholder(value: str) -> bool:
    return bool(PLACEHOLDER.search(value))
