"""Small async helpers shared by the tests."""

import asyncio

import sotto

PASSPHRASE = "correct horse battery staple"


async def new_client(path, options) -> sotto.Client:
    return await sotto.Client.create(str(path), PASSPHRASE, options)


async def next_message(client: sotto.Client, timeout: float = 20.0) -> sotto.IncomingMessage:
    """The next `Event.MESSAGE` of `client`, skipping other events."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError("no message arrived in time")
        event = await client.next_event(timeout_ms=int(left * 1000))
        if event is None:
            raise AssertionError("no message arrived in time")
        if event.is_message():
            return event.message


async def pair(tmp_path, relay, options):
    """Alice and Bob, registered on `relay`, each the other's contact."""
    alice = await new_client(tmp_path / "alice", options)
    bob = await new_client(tmp_path / "bob", options)
    await alice.register(relay.address)
    await bob.register(relay.address)
    await alice.add_contact("bob", bob.address())
    await bob.add_contact("alice", alice.address())
    return alice, bob
