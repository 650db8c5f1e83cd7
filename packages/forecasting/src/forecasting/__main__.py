import sys

from forecasting._cli import main

sys.exit(main())
