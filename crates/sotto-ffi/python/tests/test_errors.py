"""Typed errors, and an exception (never a crash) for every misuse tried."""

import asyncio

import pytest

import sotto
from conftest import FAST, MAX_FRAME
from helpers import PASSPHRASE, new_client, pair


def test_wrong_passphrase_is_a_typed_error(tmp_path):
    async def scenario():
        client = await new_client(tmp_path / "p", FAST)
        address = client.address()
        await client.close()
        with pytest.raises(sotto.SottoError.WrongPassphrase):
            await sotto.Client.open(str(tmp_path / "p"), "not the passphrase", FAST)
        again = await sotto.Client.open(str(tmp_path / "p"), PASSPHRASE, FAST)
        assert again.address() == address
        await again.close()

    asyncio.run(scenario())


def test_missing_and_existing_profiles_are_typed_errors(tmp_path):
    async def scenario():
        with pytest.raises(sotto.SottoError.NoProfile) as missing:
            await sotto.Client.open(str(tmp_path / "nobody"), PASSPHRASE, FAST)
        assert "nobody" in missing.value.path
        client = await new_client(tmp_path / "p", FAST)
        with pytest.raises(sotto.SottoError.ProfileExists):
            await new_client(tmp_path / "p", FAST)
        await client.close()
        with pytest.raises(sotto.SottoError.Store):
            await sotto.Client.create(
                str(tmp_path / "q"), PASSPHRASE, sotto.ClientOptions(kdf_iterations=0)
            )

    asyncio.run(scenario())


def test_a_closed_client_raises_closed_for_every_call(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        await alice.close()
        assert alice.is_closed()
        assert not alice.is_connected()
        await alice.close()  # closing again does nothing

        sync_calls = [alice.address, alice.device_id, alice.profile_dir, alice.saved_relay,
                      alice.dropped_envelopes]
        for call in sync_calls:
            with pytest.raises(sotto.SottoError.Closed):
                call()
        async_calls = [
            alice.send("bob", b"x"),
            alice.history("bob"),
            alice.contacts(),
            alice.safety_number("bob"),
            alice.connect(relay.address),
            alice.register(relay.address),
            alice.sync(),
            alice.next_event(timeout_ms=10),
            alice.devices(),
            alice.groups(),
            alice.add_contact("carol", bob.address()),
        ]
        for call in async_calls:
            with pytest.raises(sotto.SottoError.Closed):
                await call
        with pytest.raises(sotto.SottoError.Closed):
            alice.set_listener(sotto.EventListener())
        await bob.close()

    asyncio.run(scenario())


def test_a_waiting_next_event_ends_when_the_client_closes(tmp_path):
    async def scenario():
        client = await new_client(tmp_path / "p", FAST)
        waiting = asyncio.ensure_future(client.next_event())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await client.close()
        with pytest.raises(sotto.SottoError.Closed):
            await asyncio.wait_for(waiting, 10)

    asyncio.run(scenario())


def test_unknown_contacts_and_bad_addresses_are_typed_errors(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        with pytest.raises(sotto.SottoError.UnknownContact) as e:
            await alice.send("nobody", b"hello?")
        assert e.value.contact == "nobody"
        for call in (alice.history("nobody"), alice.safety_number("nobody"),
                     alice.mark_verified("nobody"), alice.is_verified("nobody")):
            with pytest.raises(sotto.SottoError.UnknownContact):
                await call
        with pytest.raises(sotto.SottoError.InvalidAddress):
            await alice.add_contact("carol", "sotto:1234")
        with pytest.raises(sotto.SottoError.InvalidAddress):
            await alice.add_contact("carol", "")
        with pytest.raises(sotto.SottoError.InvalidContactName):
            await alice.add_contact("  ", bob.address())
        with pytest.raises(sotto.SottoError.OwnAddress):
            await alice.add_contact("me", alice.address())
        with pytest.raises(sotto.SottoError.ContactExists):
            await alice.add_contact("bob", bob.address())
        with pytest.raises(sotto.SottoError.InvalidRelayAddress):
            await alice.connect("http://example.invalid/relay")
        with pytest.raises(sotto.SottoError.UnknownGroup):
            await alice.send_to_group("no such group", b"x")
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_a_huge_message_is_refused_and_nothing_is_stored(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        await alice.send("bob", b"small first")
        huge = bytes(4 * 1024 * 1024)
        with pytest.raises(sotto.SottoError.MessageTooLarge) as e:
            await alice.send("bob", huge)
        assert e.value.len == len(huge)
        assert 0 < e.value.max < MAX_FRAME
        history = await alice.history("bob")
        assert [item.body for item in history] == [b"small first"]
        # The largest message that fits still goes.
        sent = await alice.send("bob", bytes(e.value.max))
        assert sent.status == sotto.SendStatus.ACCEPTED()
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_first_message_without_a_relay_is_refused(tmp_path, relay):
    async def scenario():
        alice, bob = await pair(tmp_path, relay, FAST)
        await alice.disconnect()
        assert not alice.is_connected()
        with pytest.raises(sotto.SottoError.FirstMessageNeedsRelay):
            await alice.send("bob", b"no session yet")
        with pytest.raises(sotto.SottoError.NotConnected):
            await alice.sync()
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_wrong_argument_types_and_ranges_raise_python_errors(tmp_path):
    async def scenario():
        client = await new_client(tmp_path / "p", FAST)
        with pytest.raises(TypeError):
            await client.send("bob", "a str, not bytes")
        with pytest.raises(ValueError):
            await client.history("bob", limit=-1)
        with pytest.raises(ValueError):
            await client.mark_read("bob", 2**64)
        with pytest.raises(TypeError):
            await client.add_contact(None, client.address())
        await client.close()

    asyncio.run(scenario())
