"""A TLS-terminating front for the secure mode of the native stack (compose/local/stack).

The Temporal dev server and Apicurio Registry serve plain TCP here; this front gives each a
TLS endpoint with the stack's generated certificate, so vecstream's clients are tested over
TLS with the stack's own CA (what a TLS-terminating load balancer does in production).

    tls_front.py CERT KEY LISTEN_PORT:TARGET_PORT:ALPN [...]

ALPN is `h2` (gRPC: Temporal) or `http/1.1` (REST). Bytes are piped both ways, unchanged.
"""

import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the other side may be gone already
            pass


def handler(target_port):
    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    return handle


async def main(cert, key, routes):
    servers = []
    for route in routes:
        listen, target, alpn = route.split(":", 2)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols([alpn])
        servers.append(await asyncio.start_server(handler(int(target)), "127.0.0.1", int(listen), ssl=context))
        print(f"tls front: 127.0.0.1:{listen} ({alpn}) -> 127.0.0.1:{target}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
