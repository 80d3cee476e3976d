"""Entry point for `python -m date_seq2seq`."""

import sys

from .cli import main

sys.exit(main())
