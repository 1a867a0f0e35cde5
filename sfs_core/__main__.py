import sys

from sfs_core.cli import main

sys.exit(main())
