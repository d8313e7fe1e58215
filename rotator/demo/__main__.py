"""`python -m rotator.demo`: the same as `rotator demo`."""

from __future__ import annotations

import sys

from rotator.demo.runner import main

sys.exit(main())
