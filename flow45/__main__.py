import sys

from flow45.cli import main

sys.exit(main())
