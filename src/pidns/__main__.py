import sys

from pidns.cli import main

sys.exit(main())
