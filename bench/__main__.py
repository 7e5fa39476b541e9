"""`python -m bench [--quick | --scale 1m] [--json PATH] [--runs 3]`: see bench/runner.py."""
import sys

from bench.runner import main

sys.exit(main())
