"""The compiled fan-out (rooms/media/_fanout.c); everything else is in pyproject.toml.

`optional`: without a C compiler the install still succeeds and the SFU uses the
pure-Python fan-out (rooms/media/fanout.py), which gives the same bytes, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rooms.media._fanout",
            sources=["rooms/media/_fanout.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
