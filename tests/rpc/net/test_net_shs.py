"""The secret handshake state machines, in memory (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_rpc.net import HandshakeError, NodeKey
from garage_rpc.net._shs import (
    CLIENT_AUTH_LEN,
    CLIENT_HELLO_LEN,
    SERVER_ACCEPT_LEN,
    SERVER_HELLO_LEN,
    HandshakeOutcome,
    ShsClient,
    ShsServer,
    _auth,
)

K = bytes(range(32))
CLIENT_KEY = NodeKey(bytes([1]) * 32)
SERVER_KEY = NodeKey(bytes([2]) * 32)


def machines(
    *,
    client_k: bytes = K,
    server_k: bytes = K,
    dialled: bytes | None = None,
) -> tuple[ShsClient, ShsServer]:
    client = ShsClient(
        client_k,
        CLIENT_KEY,
        dialled if dialled is not None else SERVER_KEY.node_id,
        ephemeral_secret=bytes([3]) * 32,
    )
    server = ShsServer(server_k, SERVER_KEY, ephemeral_secret=bytes([4]) * 32)
    return client, server


def run(
    client: ShsClient, server: ShsServer
) -> tuple[list[bytes], HandshakeOutcome, HandshakeOutcome]:
    """The four messages and both outcomes of a successful handshake."""
    msg1 = client.start()
    msg2 = server.receive_data(msg1)
    msg3 = client.receive_data(msg2)
    msg4 = server.receive_data(msg3)
    assert server.done
    assert client.receive_data(msg4) == b""
    assert client.done
    return [msg1, msg2, msg3, msg4], client.outcome, server.outcome


def test_handshake_yields_matching_keys_and_identities() -> None:
    messages, c, s = run(*machines())
    assert [len(m) for m in messages] == [
        CLIENT_HELLO_LEN,
        SERVER_HELLO_LEN,
        CLIENT_AUTH_LEN,
        SERVER_ACCEPT_LEN,
    ]
    assert c.peer_id == SERVER_KEY.node_id
    assert s.peer_id == CLIENT_KEY.node_id
    assert (c.encrypt_key, c.encrypt_nonce) == (s.decrypt_key, s.decrypt_nonce)
    assert (c.decrypt_key, c.decrypt_nonce) == (s.encrypt_key, s.encrypt_nonce)
    assert c.encrypt_key != c.decrypt_key  # each direction has its own key
    assert len(c.encrypt_key) == 32
    assert len(c.encrypt_nonce) == 24
    assert "key" not in repr(c).replace("peer_id", "")  # keys stay out of logs


def test_handshake_is_deterministic_given_the_ephemeral_keys() -> None:
    first = run(*machines())
    second = run(*machines())
    assert first == second
    other_client = ShsClient(K, CLIENT_KEY, SERVER_KEY.node_id, ephemeral_secret=bytes([5]) * 32)
    _, c, _ = run(other_client, machines()[1])
    assert c.encrypt_key != first[1].encrypt_key  # fresh ephemeral key, fresh session


@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8), trailing=st.binary())
def test_any_chunking_of_the_messages_works(cuts: list[int], trailing: bytes) -> None:
    client, server = machines()
    msg1 = client.start()
    out = b""
    data = msg1
    for cut in sorted(cuts):  # the server's bytes arrive in arbitrary pieces
        piece, data = data[:cut], data[cut:]
        out += server.receive_data(piece)
    out += server.receive_data(data)
    msg3 = client.receive_data(out[:10]) + client.receive_data(out[10:])
    msg4 = server.receive_data(msg3 + trailing)  # box-stream bytes may follow message 3
    assert server.done
    assert server.trailing_data == trailing
    assert client.receive_data(msg4[:1]) == b""
    assert client.receive_data(msg4[1:]) == b""
    assert client.outcome.encrypt_key == server.outcome.decrypt_key


def test_wrong_network_key_fails_on_the_server_before_it_answers() -> None:
    client, server = machines(client_k=bytes(32))
    with pytest.raises(HandshakeError, match="network key"):
        server.receive_data(client.start())
    with pytest.raises(HandshakeError):  # failed for good
        server.receive_data(b"")


def test_client_detects_a_server_without_the_network_key() -> None:
    client, server = machines(server_k=bytes(32))
    client.start()
    # a server that does not check (or an attacker) answers with its own key's HMAC
    fake_client = ShsClient(bytes(32), CLIENT_KEY, SERVER_KEY.node_id, ephemeral_secret=bytes(32))
    msg2 = server.receive_data(fake_client.start())
    with pytest.raises(HandshakeError, match="network key"):
        client.receive_data(msg2)


def test_server_that_is_not_the_dialled_node_fails_before_answering() -> None:
    client, server = machines(dialled=NodeKey.generate().node_id)
    msg2 = server.receive_data(client.start())
    msg3 = client.receive_data(msg2)
    with pytest.raises(HandshakeError, match="dialled another node"):
        server.receive_data(msg3)
    assert not server.done


@pytest.mark.parametrize("index", [0, 1, 2, 3])
@pytest.mark.parametrize("position", [0, 31, 40, 63])
def test_tampered_messages_fail(index: int, position: int) -> None:
    honest, _, _ = run(*machines())  # the same messages a fresh pair exchanges
    client, server = machines()
    client.start()
    receivers: list[ShsClient | ShsServer] = [server, client, server, client]
    for i in range(index):
        receivers[i].receive_data(honest[i])
    tampered = bytearray(honest[index])
    tampered[position] ^= 0x01
    with pytest.raises(HandshakeError):
        receivers[index].receive_data(bytes(tampered))


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ShsServer(b"short", SERVER_KEY, ephemeral_secret=bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        ShsServer(K, SERVER_KEY, ephemeral_secret=b"short")
    client, _ = machines()
    with pytest.raises(RuntimeError):
        _ = client.outcome
    client.start()
    with pytest.raises(RuntimeError):
        client.start()


def test_low_order_ephemeral_key_is_refused() -> None:
    _, server = machines()
    zero_point = bytes(32)  # x25519 with it gives the all-zero secret
    with pytest.raises(HandshakeError, match="invalid ephemeral key"):
        server.receive_data(_auth(K, zero_point) + zero_point)
