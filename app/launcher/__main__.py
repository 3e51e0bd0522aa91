"""`python -m understudy` (in a checkout, `python -m app.launcher`): the `understudy` command."""

import sys

from .cli import main

sys.exit(main())
