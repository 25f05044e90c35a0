import sys

from graph.instruct.cli import main

sys.exit(main())
