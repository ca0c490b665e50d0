import sys

from clusdisk.cli import main

sys.exit(main())
