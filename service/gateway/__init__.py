"""The aiohttp gateway: validates requests and publishes them; never touches a password."""
