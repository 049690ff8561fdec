import sys

from genray.cli import main

sys.exit(main())
