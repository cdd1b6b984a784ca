"""An echo bot: answers every message with the same bytes, prefixed.

    pip install crates/sotto-ffi
    SOTTO_PASSPHRASE=... python examples/python/echo_bot.py PROFILE_DIR RELAY

The first run creates the profile in PROFILE_DIR and registers it with
RELAY (`host:port` or `tls://host:port`); later runs open it and connect
to the relay it registered with. It prints its address (give it to the
people who will write to it) and answers until interrupted.
"""

import asyncio
import os
import sys

import sotto


async def open_bot(profile_dir: str, relay: str, passphrase: str) -> sotto.Client:
    try:
        bot = await sotto.Client.open(profile_dir, passphrase)
    except sotto.SottoError.NoProfile:
        bot = await sotto.Client.create(profile_dir, passphrase)
        await bot.register(relay)
        return bot
    await bot.connect(relay)
    return bot


async def echo(bot: sotto.Client) -> None:
    while True:
        event = await bot.next_event()
        if event is None or not event.is_message():
            continue
        message = event.message
        # Someone who wrote first is a contact without a name: answer by
        # address.
        try:
            await bot.send(message.contact, b"echo: " + message.body)
        except sotto.SottoError.MessageTooLarge:
            await bot.send(message.contact, b"echo: (too long to repeat)")


async def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    profile_dir, relay = sys.argv[1], sys.argv[2]
    passphrase = os.environ.get("SOTTO_PASSPHRASE")
    if not passphrase:
        print("set SOTTO_PASSPHRASE to the profile's passphrase", file=sys.stderr)
        return 2
    bot = await open_bot(profile_dir, relay, passphrase)
    print(f"echo bot listening as {bot.address()}", flush=True)
    try:
        await echo(bot)
    finally:
        await bot.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(0)
    except sotto.SottoError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
