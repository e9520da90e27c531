"""Care between, around and after sessions (domain): handouts, homework worksheets,
outcome measures, discharge and aftercare.

Plain Python and dataclasses; it never imports aiohttp, aiortc or SQLAlchemy.
"""
