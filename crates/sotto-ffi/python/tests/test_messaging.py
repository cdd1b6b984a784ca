"""Two profiles on a relay started by the test, driven through the Python
package: first contact, messages both ways, an offline recipient catching
up, history, safety numbers."""

import asyncio

import sotto
from conftest import FAST
from helpers import PASSPHRASE, new_client, next_message, pair


def test_first_contact_and_messages_both_ways(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        assert alice.is_connected() and bob.is_connected()

        sent = await alice.send("bob", b"hello bob")
        assert sent.status == sotto.SendStatus.ACCEPTED()
        assert sent.seq >= 1
        got = await next_message(bob)
        assert got.body == b"hello bob"
        assert got.name == "alice"
        [alice_contact] = await bob.contacts()
        assert got.contact == alice_contact.address
        assert alice_contact.name == "alice"

        reply = await bob.send("alice", b"\x00binary\xffreply")
        assert reply.status == sotto.SendStatus.ACCEPTED()
        got = await next_message(alice)
        assert got.body == b"\x00binary\xffreply"
        assert got.name == "bob"

        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_offline_recipient_catches_up_on_connect(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        await bob.close()

        bodies = [f"while you were away {i}".encode() for i in range(3)]
        for body in bodies:
            sent = await alice.send("bob", body)
            assert sent.status == sotto.SendStatus.ACCEPTED()

        bob = await sotto.Client.open(str(tmp_path / "bob"), PASSPHRASE, FAST)
        assert not bob.is_connected()
        assert await bob.history("alice") == []
        await bob.connect_saved()
        # connect returns once the mailbox is stored: in history, oldest last.
        page = await bob.history("alice", limit=10)
        assert [item.body for item in reversed(page)] == bodies
        assert all(not item.outgoing for item in page)
        # ...and each was announced, in order.
        for body in bodies:
            assert (await next_message(bob)).body == body

        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_history_pages_newest_first_with_delivery_states(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        seqs = []
        for i in range(5):
            seqs.append((await alice.send("bob", f"m{i}".encode())).seq)
        for _ in range(5):
            await next_message(bob)

        first = await alice.history("bob", limit=2)
        assert [item.seq for item in first] == [seqs[4], seqs[3]]
        assert all(item.outgoing for item in first)
        rest = await alice.history("bob", before=first[-1].seq, limit=10)
        assert [item.body for item in rest] == [b"m2", b"m1", b"m0"]
        for item in first + rest:
            assert item.unreadable is None
            assert item.state in (
                sotto.DeliveryState.SENT(),
                sotto.DeliveryState.DELIVERED(),
            )

        incoming = await bob.history("alice", limit=10)
        assert [item.body for item in incoming] == [b"m4", b"m3", b"m2", b"m1", b"m0"]
        assert all(item.state == sotto.DeliveryState.RECEIVED() for item in incoming)
        assert await bob.mark_read("alice", incoming[0].seq)
        assert not await bob.mark_read("alice", incoming[0].seq)

        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_safety_numbers_agree_and_verification_is_kept(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        mine = await alice.safety_number("bob")
        theirs = await bob.safety_number("alice")
        assert mine == theirs
        assert len(mine.replace(" ", "")) == 60 and mine.replace(" ", "").isdigit()

        assert not await alice.is_verified("bob")
        await alice.mark_verified("bob")
        assert await alice.is_verified("bob")
        contacts = await alice.contacts()
        assert [(c.name, c.verified) for c in contacts] == [("bob", True)]

        await alice.close()
        alice = await sotto.Client.open(str(tmp_path / "alice"), PASSPHRASE, FAST)
        assert await alice.is_verified("bob")
        assert await alice.safety_number("bob") == theirs

        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_listener_gets_every_message_on_its_own_thread(tmp_path, relay):
    import threading

    class Collect(sotto.EventListener):
        def __init__(self):
            self.bodies = []
            self.threads = set()
            self.done = threading.Event()

        def on_event(self, event):
            self.threads.add(threading.current_thread().name)
            if event.is_message():
                self.bodies.append(event.message.body)
                if len(self.bodies) == 3:
                    self.done.set()

    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        listener = Collect()
        bob.set_listener(listener)
        for i in range(3):
            await alice.send("bob", f"to the listener {i}".encode())
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, listener.done.wait, 20)
        assert listener.bodies == [f"to the listener {i}".encode() for i in range(3)]
        assert threading.main_thread().name not in listener.threads

        bob.clear_listener()
        await alice.send("bob", b"after the listener")
        assert (await next_message(bob)).body == b"to the listener 0"
        await asyncio.sleep(0.5)
        assert len(listener.bodies) == 3

        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_tls_relay_with_a_pinned_certificate(tmp_path, tls_relay):
    relay, pem = tls_relay

    async def scenario():
        pinned = sotto.ClientOptions(
            relay_ca_pem=pem, kdf_memory_kib=64, kdf_iterations=1
        )
        alice, bob = await pair(tmp_path, relay, pinned)
        assert alice.saved_relay() == relay.address
        await alice.send("bob", b"over tls")
        assert (await next_message(bob)).body == b"over tls"

        # Without the pinned certificate the platform's trust store does
        # not know this relay: a typed error, not a crash.
        stranger = await new_client(tmp_path / "stranger", FAST)
        try:
            await stranger.register(relay.address)
        except sotto.SottoError.Relay:
            pass
        else:
            raise AssertionError("an unknown certificate was accepted")

        for c in (alice, bob, stranger):
            await c.close()

    asyncio.run(scenario())


def test_a_send_whose_caller_stops_waiting_still_completes(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        await alice.send("bob", b"first")
        assert (await next_message(bob)).body == b"first"

        task = asyncio.ensure_future(alice.send("bob", b"nobody waits for me"))
        await asyncio.sleep(0)  # the call has started
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the send finished before it could be cancelled")
        # The call went on without its caller: stored, sent, received.
        assert (await next_message(bob)).body == b"nobody waits for me"
        bodies = [item.body for item in await alice.history("bob")]
        assert bodies == [b"nobody waits for me", b"first"]

        await alice.close()
        await bob.close()

    asyncio.run(scenario())
