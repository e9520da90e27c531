"""Care between and after sessions (domain): outcome measures, discharge and aftercare.

Plain Python and dataclasses; it never imports aiohttp, aiortc or SQLAlchemy.
"""
