import sys

from witnessd.cli import main

sys.exit(main())
