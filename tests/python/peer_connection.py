"""The Python side of tests/python_interop.rs: CPython's own
multiprocessing.connection Listener / Client talking to multiproc.

usage:
  peer_connection.py listen  ADDRESS KEY DIALECT   (ADDRESS: tcp | unix:PATH)
  peer_connection.py connect ADDRESS KEY DIALECT   (ADDRESS: tcp:HOST:PORT | unix:PATH)

KEY is the authkey in hex, or '-' for none. DIALECT is 'native' (whatever
this python3 speaks: HMAC-MD5 up to 3.11) or 'sha256' (the {sha256} form of
Python 3.12+, written out below so a 3.11 interpreter can speak it too).

A listener prints its address on the first line of stdout. Then the client
sends a message of each size, the listener checks it and answers with a
message of the same size, the client checks that. Prints OK and exits 0;
prints AUTH_ERROR and exits 3 when authentication fails; exits 1 on a
wrong message. An alarm ends it after 60 seconds whatever happens.
"""

import hmac
import os
import signal
import sys
from multiprocessing.connection import AuthenticationError, Client, Listener

SIZES = [0, 1, 64 * 1024, 3 * 1024 * 1024]
CLIENT_SEED = 7
LISTENER_SEED = 101


def pattern(size, seed):
    """Byte i is (seed + i) % 256, as the Rust side builds it."""
    block = bytes(range(seed, 256)) + bytes(range(seed))
    return (block * (size // 256 + 1))[:size]


def sha256_deliver(conn, key):
    message = b"{sha256}" + os.urandom(40)
    conn.send_bytes(b"#CHALLENGE#" + message)
    answer = conn.recv_bytes(256)
    expected = b"{sha256}" + hmac.new(key, message, "sha256").digest()
    if hmac.compare_digest(answer, expected):
        conn.send_bytes(b"#WELCOME#")
    else:
        conn.send_bytes(b"#FAILURE#")
        raise AuthenticationError("digest received was wrong")


def sha256_answer(conn, key):
    message = conn.recv_bytes(256)
    if not message.startswith(b"#CHALLENGE#{sha256}"):
        raise AuthenticationError("expected a {sha256} challenge: %r" % message[:40])
    message = message[len(b"#CHALLENGE#"):]
    conn.send_bytes(b"{sha256}" + hmac.new(key, message, "sha256").digest())
    if conn.recv_bytes(256) != b"#WELCOME#":
        raise AuthenticationError("digest sent was rejected")


def exchange(conn, role):
    for size in SIZES:
        if role == "client":
            conn.send_bytes(pattern(size, CLIENT_SEED))
            got = conn.recv_bytes()
            want = pattern(size, LISTENER_SEED)
        else:
            got = conn.recv_bytes()
            want = pattern(size, CLIENT_SEED)
        if got != want:
            print("WRONG message of %d bytes (wanted %d)" % (len(got), size), flush=True)
            sys.exit(1)
        if role == "listener":
            conn.send_bytes(pattern(size, LISTENER_SEED))


def main():
    signal.alarm(60)
    mode, address, key, dialect = sys.argv[1:5]
    key = None if key == "-" else bytes.fromhex(key)
    native_key = key if dialect == "native" else None
    try:
        if mode == "listen":
            if address == "tcp":
                listener = Listener(("127.0.0.1", 0), authkey=native_key)
                host, port = listener.address
                print("tcp:%s:%d" % (host, port), flush=True)
            else:
                path = address[len("unix:"):]
                listener = Listener(path, family="AF_UNIX", authkey=native_key)
                print(address, flush=True)
            with listener:
                conn = listener.accept()
                if dialect == "sha256":
                    sha256_deliver(conn, key)
                    sha256_answer(conn, key)
                exchange(conn, "listener")
        else:
            if address.startswith("tcp:"):
                host, port = address[len("tcp:"):].rsplit(":", 1)
                conn = Client((host, int(port)), authkey=native_key)
            else:
                conn = Client(address[len("unix:"):], family="AF_UNIX", authkey=native_key)
            if dialect == "sha256":
                sha256_answer(conn, key)
                sha256_deliver(conn, key)
            exchange(conn, "client")
    except AuthenticationError as e:
        print("AUTH_ERROR", e, flush=True)
        sys.exit(3)
    print("OK", flush=True)


if __name__ == "__main__":
    main()
