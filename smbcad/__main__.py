import sys

from smbcad.cli import main

sys.exit(main())
