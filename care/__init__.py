"""Care between and after sessions (domain): homework worksheets, outcome measures,
discharge and aftercare.

Plain Python and dataclasses; it never imports aiohttp, aiortc or SQLAlchemy.
"""
