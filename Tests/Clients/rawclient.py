#!/usr/bin/env python3
"""A raw TLS client for the server tests: sends exactly the bytes a scenario needs.

Only the Python standard library (its ssl module is OpenSSL). Loopback only; every loop is
bounded in count and time. Each command prints one JSON object on stdout.

  h1 --port P --ca CA [--cert C --key K] STEP...
      STEP is send:TEXT (\\r \\n \\xNN escapes), corked:TEXT|TEXT... (each piece its own
      TLS record, all released to the network at once), sleep:SECONDS, recv (read until the peer
      closes or goes quiet for a moment), or recvclose (read until the peer closes).
      Prints {"responses": "...", "closed": bool, "error": "..."}.
  rotation --port P --ca CA
      Sends a request, prints {"serial": ...} of the peer certificate, waits for a line on
      stdin, sends another request on the same connection and prints its status line.
  h2-rapid-reset --port P --ca CA --count N
      Opens and immediately resets up to N streams; prints whether and when GOAWAY came.
  h2-continuation-flood --port P --ca CA --count N
      HEADERS without END_HEADERS, then up to N empty CONTINUATION frames.
  h2-big-headers --port P --ca CA --bytes N
      One request whose header list is N bytes, spread over CONTINUATION frames.
  h2-parallel-uploads --port P --ca CA --streams N --bytes B
      N POST streams whose B-byte bodies are all in flight before any of them ends.
"""
import argparse
import itertools
import json
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def connect(args, alpn):
    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if getattr(args, "cert", None):
        context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def unescape(text):
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def read_until_quiet(sock, quiet, until_close):
    data = b""
    closed = False
    sock.settimeout(quiet)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            if until_close:
                continue
            break
        except (ConnectionResetError, ssl.SSLError, OSError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    return data, closed


def cmd_h1(args):
    result = {"responses": "", "closed": False}
    try:
        sock = connect(args, ["http/1.1"])
    except Exception as error:  # the handshake itself was refused
        print(json.dumps({"responses": "", "closed": True, "error": str(error)}))
        return
    for step in args.steps:
        kind, _, value = step.partition(":")
        try:
            if kind == "send":
                sock.sendall(unescape(value))
            elif kind == "corked":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                for piece in value.split("|"):
                    sock.sendall(unescape(piece))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            elif kind == "sleep":
                time.sleep(float(value))
            elif kind in ("recv", "recvclose"):
                data, closed = read_until_quiet(sock, 1.0, kind == "recvclose")
                result["responses"] += data.decode("latin-1")
                result["closed"] = result["closed"] or closed
            else:
                raise SystemExit(f"unknown step {step}")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as error:
            result["closed"] = True
            result["error"] = str(error)
            break
    print(json.dumps(result))


def cmd_rotation(args):
    sock = connect(args, ["http/1.1"])
    der = sock.getpeercert(binary_form=True)
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    sock.sendall(request)
    first, _ = read_until_quiet(sock, 0.5, False)
    print(json.dumps({"first": first.decode("latin-1").split("\r\n")[0], "der_len": len(der),
                      "serial": serial_of(der)}), flush=True)
    sys.stdin.readline()
    sock.sendall(request)
    second, closed = read_until_quiet(sock, 0.5, False)
    print(json.dumps({"second": second.decode("latin-1").split("\r\n")[0], "closed": closed}), flush=True)


def serial_of(der):
    """The serial number of a DER certificate, as upper-case hex (as OpenSSL prints it)."""
    def read_tlv(data, offset):
        tag = data[offset]
        length = data[offset + 1]
        offset += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[offset:offset + count], "big")
            offset += count
        return tag, data[offset:offset + length], offset + length
    _, certificate, _ = read_tlv(der, 0)
    _, tbs, _ = read_tlv(certificate, 0)
    offset = 0
    tag, value, next_offset = read_tlv(tbs, offset)
    if tag == 0xA0:  # explicit version
        tag, value, next_offset = read_tlv(tbs, next_offset)
    # Whole bytes, as OpenSSL's BN_bn2hex prints them: only zero bytes are dropped.
    return value.lstrip(b"\x00").hex().upper() or "00"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    """A literal header field without indexing, with a literal name (RFC 7541 6.2.2)."""
    def string(data):
        if len(data) < 127:
            return bytes([len(data)]) + data
        out = bytearray([127])
        rest = len(data) - 127
        while rest >= 128:
            out.append((rest % 128) + 128)
            rest //= 128
        out.append(rest)
        return bytes(out) + data
    return b"\x00" + string(name) + string(value)


def request_block(path=b"/validate", extra=b""):
    # :method POST (static 3), :scheme https (7), then :path and :authority as literals.
    return b"\x83\x87" + hpack_literal(b":path", path) + hpack_literal(b":authority", b"localhost") + extra


def h2_start(args):
    sock = connect(args, ["h2"])
    if sock.selected_alpn_protocol() != "h2":
        raise SystemExit("server did not select h2")
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return sock


def read_frames(sock, state, budget):
    """Reads frames for up to `budget` seconds; records GOAWAY, RST_STREAM and statuses."""
    sock.settimeout(0.05 if budget > 0 else 0.001)
    end = time.time() + budget
    first = True
    while (first or time.time() < end) and not state["closed"]:
        first = False
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return
        except (ConnectionResetError, ssl.SSLError, OSError):
            state["closed"] = True
            return
        if not chunk:
            state["closed"] = True
            return
        state["buffer"] += chunk
        while len(state["buffer"]) >= 9:
            length = int.from_bytes(state["buffer"][0:3], "big")
            if len(state["buffer"]) < 9 + length:
                break
            kind, flags = state["buffer"][3], state["buffer"][4]
            stream = int.from_bytes(state["buffer"][5:9], "big") & 0x7FFFFFFF
            payload = state["buffer"][9:9 + length]
            state["buffer"] = state["buffer"][9 + length:]
            if kind == GOAWAY:
                state["goaway"] = int.from_bytes(payload[4:8], "big")
            elif kind == RST_STREAM:
                state["resets"] += 1
                state.setdefault("reset_codes", {})[stream] = int.from_bytes(payload[0:4], "big")
            elif kind == SETTINGS and not flags & ACK:
                sock.sendall(frame(SETTINGS, ACK, 0))
            elif kind == HEADERS:
                state["headers"].append((stream, payload[:1].hex()))
            elif kind == DATA:
                state["data"] += payload


def new_state():
    return {"closed": False, "goaway": None, "resets": 0, "buffer": b"", "headers": [], "data": b""}


def flood(args, opening, send_round):
    """Sends `opening`, then rounds from send_round() (bytes and how many they count), until
    args.count are sent, the server sends GOAWAY or closes, or 20 s pass; prints what it did."""
    sock = h2_start(args)
    state = new_state()
    sent = 0
    started = time.time()
    try:
        sock.sendall(opening)
        while sent < args.count and state["goaway"] is None and not state["closed"] and time.time() - started < 20:
            data, count = send_round()
            sock.sendall(data)
            sent += count
            read_frames(sock, state, 0)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
        state["closed"] = True
    read_frames(sock, state, 2)
    print(json.dumps({"sent": sent, "goaway": state["goaway"], "closed": state["closed"]}))


def cmd_h2_rapid_reset(args):
    streams = iter(range(1, 2**31, 2))

    def opened_and_cancelled():
        batch = b""
        for stream in itertools.islice(streams, 50):
            batch += frame(HEADERS, END_HEADERS, stream, request_block())
            batch += frame(RST_STREAM, 0, stream, struct.pack(">I", 8))  # CANCEL
        return batch, 50

    flood(args, b"", opened_and_cancelled)


def cmd_h2_continuation_flood(args):
    # A header block that never ends: HEADERS without END_HEADERS, then empty CONTINUATIONs.
    flood(args, frame(HEADERS, 0, 1, request_block()), lambda: (frame(CONTINUATION, 0, 1, b"") * 20, 20))


def cmd_h2_big_headers(args):
    sock = h2_start(args)
    state = new_state()
    # Fields of 16 KB each: a single field past 64 KB is an HPACK error of its own.
    fields = b"".join(hpack_literal(b"x-padding-%d" % i, b"a" * min(16384, args.bytes - i * 16384))
                      for i in range((args.bytes + 16383) // 16384))
    block = request_block(path=b"/healthz", extra=fields)
    block = b"\x82\x87" + block[2:]  # :method GET (static 2)
    pieces = [block[i:i + 16000] for i in range(0, len(block), 16000)]
    out = frame(HEADERS, END_STREAM | (END_HEADERS if len(pieces) == 1 else 0), 1, pieces[0])
    for index, piece in enumerate(pieces[1:], start=1):
        out += frame(CONTINUATION, END_HEADERS if index == len(pieces) - 1 else 0, 1, piece)
    try:
        sock.sendall(out)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
        state["closed"] = True
    read_frames(sock, state, 2)
    # The :status of the first HEADERS is an indexed static entry: 0x88 = 200, else literal.
    body = state["data"].decode("latin-1")
    print(json.dumps({"headers": state["headers"], "body": body, "goaway": state["goaway"],
                      "resets": state["resets"], "closed": state["closed"]}))


def cmd_h2_parallel_uploads(args):
    """Opens --streams POST streams and sends each --bytes of body before ending any of them."""
    sock = h2_start(args)
    state = new_state()
    streams = [1 + 2 * i for i in range(args.streams)]
    chunk = b"x" * 16000
    try:
        for stream in streams:
            sock.sendall(frame(HEADERS, END_HEADERS, stream, request_block()))
        for stream in streams:
            sent = 0
            while sent < args.bytes:
                piece = chunk[:min(len(chunk), args.bytes - sent)]
                sock.sendall(frame(DATA, 0, stream, piece))
                sent += len(piece)
            read_frames(sock, state, 0)
        for stream in streams:
            sock.sendall(frame(DATA, END_STREAM, stream))
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
        state["closed"] = True
    read_frames(sock, state, 2)
    answered = sorted({stream for stream, _ in state["headers"]})
    print(json.dumps({"answered": answered, "reset_codes": state.get("reset_codes", {}),
                      "goaway": state["goaway"], "closed": state["closed"]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("h1", "rotation", "h2-rapid-reset", "h2-continuation-flood", "h2-big-headers", "h2-parallel-uploads"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--ca", required=True)
        p.add_argument("--cert")
        p.add_argument("--key")
        if name == "h1":
            p.add_argument("steps", nargs="*")
        if name in ("h2-rapid-reset", "h2-continuation-flood"):
            p.add_argument("--count", type=int, default=1000)
        if name == "h2-big-headers":
            p.add_argument("--bytes", type=int, default=100000)
        if name == "h2-parallel-uploads":
            p.add_argument("--streams", type=int, default=4)
            p.add_argument("--bytes", type=int, default=60000)
    args = parser.parse_args()
    {"h1": cmd_h1, "rotation": cmd_rotation, "h2-rapid-reset": cmd_h2_rapid_reset,
     "h2-continuation-flood": cmd_h2_continuation_flood, "h2-big-headers": cmd_h2_big_headers,
     "h2-parallel-uploads": cmd_h2_parallel_uploads}[args.command](args)


if __name__ == "__main__":
    main()
