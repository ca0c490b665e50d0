"""smbcad with create intents switched off: the "without" arm of
bench/intent_bench.py, nothing else (``python -m bench.smbcad_without_intents``
takes smbcad's command line)."""

import sys

from smbcad.cli import main
from smbcad.server import intents

# A creating persistent CREATE then goes straight to the file, as before intents.
intents.before_open = lambda *args, **kwargs: None

sys.exit(main())
