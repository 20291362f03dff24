"""Resolve a did:webvh DID from a local log with the DIF's Python implementation.

Usage: webvh_resolve.py DID PATH-TO-did.jsonl. Prints the resolution result as JSON.
"""
import asyncio
import json
import sys
from pathlib import Path

from did_webvh.resolver import resolve


async def main() -> None:
    result = await resolve(sys.argv[1], local_history=Path(sys.argv[2]))
    print(json.dumps(result))


asyncio.run(main())
