"""`python -m llmrec`: the command line, for launchers that start a module (`torchrun -m llmrec train ...`)."""

import sys

from llmrec.cli import main

sys.exit(main())
