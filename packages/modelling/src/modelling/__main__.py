"""`python -m modelling`."""

import sys

from modelling._cli import main

sys.exit(main())
