import sys

from sdxlpool.cli import main

sys.exit(main())
