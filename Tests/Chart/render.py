"""Prints the objects the chart renders, as a JSON list, for tests outside Python
(certgateTests/ChartTests runs the Deployment's arguments against the test API server).

    render.py [VALUES_JSON]
"""

import json
import sys

from test_chart import render

values = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
objects = render(values)
for obj in objects:
    obj.pop("__template__", None)
json.dump(objects, sys.stdout)
