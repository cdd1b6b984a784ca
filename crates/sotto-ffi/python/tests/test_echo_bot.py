"""examples/python/echo_bot.py, run as a program, answers every message;
it opens its profile again after a restart."""

import asyncio
import os
import subprocess
import sys

import sotto
from conftest import FAST, REPO
from helpers import PASSPHRASE, new_client, next_message

BOT = REPO / "examples" / "python" / "echo_bot.py"


def start_bot(profile, relay_address):
    env = dict(os.environ, SOTTO_PASSPHRASE="echo bot passphrase")
    bot = subprocess.Popen(
        [sys.executable, str(BOT), str(profile), relay_address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    line = bot.stdout.readline().decode()
    if "listening as" not in line:
        bot.kill()
        raise AssertionError(f"the bot did not start: {line!r} {bot.stderr.read()!r}")
    return bot, line.split("listening as", 1)[1].strip()


def stop_bot(bot):
    bot.terminate()
    bot.wait(timeout=10)


def test_echo_bot_answers_every_message(tmp_path, relay):
    bot, address = start_bot(tmp_path / "bot", relay.address)

    async def talk(first):
        if first:
            alice = await new_client(tmp_path / "alice", FAST)
            await alice.register(relay.address)
            await alice.add_contact("bot", address)
        else:
            alice = await sotto.Client.open(str(tmp_path / "alice"), PASSPHRASE, FAST)
            await alice.connect_saved()
        for text in (b"one", b"two", b"\x00\x01 three"):
            await alice.send("bot", text)
            answer = await next_message(alice, timeout=30)
            assert answer.body == b"echo: " + text
            assert answer.name == "bot"
        await alice.close()

    try:
        asyncio.run(talk(first=True))
    finally:
        stop_bot(bot)
    # Started again, it opens the same profile and connects.
    bot, again = start_bot(tmp_path / "bot", relay.address)
    try:
        assert again == address
        asyncio.run(talk(first=False))
    finally:
        stop_bot(bot)
