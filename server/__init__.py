"""The aiohttp application: config, app factory, routes, auth, storage, logging."""
