"""The gateway's HTTP routes, one router per resource; `app.py` only includes them."""
