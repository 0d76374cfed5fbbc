"""The core every process shares, and the aiohttp gateway."""
