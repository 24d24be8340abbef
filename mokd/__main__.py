import sys

from mokd.cli import main

sys.exit(main())
