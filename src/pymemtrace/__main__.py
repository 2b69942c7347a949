import sys

from pymemtrace.cli import main

sys.exit(main())
