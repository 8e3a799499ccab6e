#!/usr/bin/env python3
"""Fills the ${NAME} placeholders of a plan configuration from the environment (run-plans.sh).
A placeholder with no value stops the run: a half-filled plan would fail in confusing ways."""

import json
import os
import re
import sys

text = open(sys.argv[1]).read()
missing = sorted({m for m in re.findall(r"\$\{([A-Z0-9_]+)\}", text) if m not in os.environ})
if missing:
    sys.exit(f"{sys.argv[1]}: no value for {', '.join(missing)}")
# json.dumps(...)[1:-1]: a value with a quote or backslash stays valid JSON.
out = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: json.dumps(os.environ[m.group(1)])[1:-1], text)
json.loads(out)
sys.stdout.write(out)
