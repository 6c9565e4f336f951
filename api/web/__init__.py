"""Web pages for people: sign in, datasets, audit reports, model comparison.

Server-rendered Jinja2 templates (templates/), one CSS and one JavaScript file
(static/, served by the app at /static: nothing comes from a CDN) and charts
drawn as inline SVG in Python (charts.py), so a downloaded report needs nothing
but itself. Page routes are as thin as the API's: they call the service
functions and shape what the templates show (views.py).
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
