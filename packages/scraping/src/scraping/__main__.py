"""`python -m scraping`."""

import sys

from scraping._cli import main

sys.exit(main())
